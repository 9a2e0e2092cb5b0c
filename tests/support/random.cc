#include "tests/support/random.h"

#include <cstdlib>

namespace flatstore::testing {

uint64_t baseSeed() {
  const char* env = std::getenv("FLATSTORE_SEED");
  if (env != nullptr && *env != '\0') return std::strtoull(env, nullptr, 10);
  return 20240611;
}

}  // namespace flatstore::testing
