// The input data of flatstore-bench, generated once and shared by every system, and its
// FlatBuffers encoding for the peers that store objects without flatstore.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench_mt_flatstore.h"
#include "docs_flatstore.h"
#include "flatbuffers/flatbuffers.h"

namespace flatstore::bench {

struct DocData {
  std::string id;
  int32_t score;
  int32_t rank;
  int64_t size;
  double ratio;
  std::string body;
};

// `n` documents with ids doc-000000..., random scalars and a 100-byte body; `rank` is a
// permutation of 0..n-1, so a rank range of n/6 selects exactly n/6 objects.
std::vector<DocData> makeDocs(int n, uint64_t seed);
const std::vector<DocData>& docs10k();
const std::vector<DocData>& docs100k();
// 10,000 documents for thread `t` (0..3) of the multi-threaded scenarios.
const std::vector<DocData>& docsForThread(int t);

// ---------------------------------------------------------------------------------------
// FlatBuffers encoding for the raw side: the generated Create<T>, the same call the
// generated object API's Pack makes, so both systems store identical bytes.

template <class T>
struct Fb;
#define FLATSTORE_BENCH_FB(T)                                                                     \
  template <>                                                                                     \
  struct Fb<T> {                                                                                  \
    static flatbuffers::Offset<T> create(flatbuffers::FlatBufferBuilder& b,                       \
                                         flatbuffers::Offset<flatbuffers::String> id,             \
                                         int32_t score, int32_t rank, int64_t size, double ratio, \
                                         flatbuffers::Offset<flatbuffers::String> body) {         \
      return Create##T(b, id, score, rank, size, ratio, body);                                    \
    }                                                                                             \
  };
FLATSTORE_BENCH_FB(Doc)
FLATSTORE_BENCH_FB(Doc0)
FLATSTORE_BENCH_FB(Doc1)
FLATSTORE_BENCH_FB(Doc2)
FLATSTORE_BENCH_FB(Doc3)
#undef FLATSTORE_BENCH_FB

template <class T>
void encodeDoc(flatbuffers::FlatBufferBuilder& b, const DocData& d) {
  b.Clear();
  auto id = b.CreateString(d.id);
  auto body = b.CreateString(d.body);
  b.Finish(Fb<T>::create(b, id, d.score, d.rank, d.size, d.ratio, body));
}

// Re-encodes the stored object `old` with a new `size`.
template <class T>
void encodeWithSize(flatbuffers::FlatBufferBuilder& b, const T& old, int64_t size) {
  b.Clear();
  auto id =
      old.id() == nullptr ? flatbuffers::Offset<flatbuffers::String>() : b.CreateString(old.id());
  auto body = old.body() == nullptr ? flatbuffers::Offset<flatbuffers::String>()
                                    : b.CreateString(old.body());
  b.Finish(Fb<T>::create(b, id, old.score(), old.rank(), size, old.ratio(), body));
}

template <class T>
const T* verifiedRoot(const void* blob, int size) {
  if (blob == nullptr) return nullptr;
  flatbuffers::Verifier verifier(static_cast<const uint8_t*>(blob), static_cast<size_t>(size));
  if (!verifier.VerifyBuffer<T>(nullptr)) return nullptr;
  return flatbuffers::GetRoot<T>(blob);
}

}  // namespace flatstore::bench
