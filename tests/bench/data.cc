#include "tests/bench/data.h"

#include <algorithm>
#include <cstdio>
#include <random>

namespace flatstore::bench {

std::vector<DocData> makeDocs(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ranks(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) ranks[static_cast<size_t>(i)] = i;
  std::shuffle(ranks.begin(), ranks.end(), rng);
  std::uniform_int_distribution<int32_t> score(0, 9999);
  std::uniform_int_distribution<int64_t> size(0, 1'000'000'000);
  std::uniform_real_distribution<double> ratio(0.0, 1.0);
  std::uniform_int_distribution<int> letter(0, 25);
  std::vector<DocData> docs(static_cast<size_t>(n));
  char id[32];
  for (int i = 0; i < n; ++i) {
    DocData& d = docs[static_cast<size_t>(i)];
    std::snprintf(id, sizeof id, "doc-%06d", i);
    d.id = id;
    d.score = score(rng);
    d.rank = ranks[static_cast<size_t>(i)];
    d.size = size(rng);
    d.ratio = ratio(rng);
    d.body.resize(100);
    for (char& c : d.body) c = static_cast<char>('a' + letter(rng));
  }
  return docs;
}

const std::vector<DocData>& docs10k() {
  static const std::vector<DocData> docs = makeDocs(10'000, 1);
  return docs;
}
const std::vector<DocData>& docs100k() {
  static const std::vector<DocData> docs = makeDocs(100'000, 2);
  return docs;
}
const std::vector<DocData>& docsForThread(int t) {
  static const std::vector<std::vector<DocData>> docs = [] {
    std::vector<std::vector<DocData>> all;
    for (int i = 0; i < 4; ++i) all.push_back(makeDocs(10'000, 10 + static_cast<uint64_t>(i)));
    return all;
  }();
  return docs[static_cast<size_t>(t)];
}

}  // namespace flatstore::bench
