// Seeded randomness for randomized tests: a generator that gives the same stream on
// every platform, and the base seed a run takes from its environment.
#ifndef FLATSTORE_TESTS_SUPPORT_RANDOM_H_
#define FLATSTORE_TESTS_SUPPORT_RANDOM_H_

#include <cstddef>
#include <cstdint>
#include <iterator>

namespace flatstore::testing {

// SplitMix64. Unlike the standard distributions, whose output the standard leaves to
// the library, below/range/chance/pick are written out here, so a seed printed by a
// failing run reproduces it anywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n).
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }
  // Uniform in [lo, hi].
  int64_t range(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(next() % static_cast<uint64_t>(hi - lo + 1));
  }
  // True with probability `p`.
  bool chance(double p) { return static_cast<double>(next() >> 11) * 0x1.0p-53 < p; }
  // One element of `c`, uniformly.
  template <class C>
  const auto& pick(const C& c) {
    return c[below(std::size(c))];
  }

 private:
  uint64_t state_;
};

// The base seed of randomized tests: FLATSTORE_SEED when set, else a fixed value, so a
// failing run is reproduced by exporting the seed its failure message printed.
uint64_t baseSeed();

}  // namespace flatstore::testing

#endif  // FLATSTORE_TESTS_SUPPORT_RANDOM_H_
