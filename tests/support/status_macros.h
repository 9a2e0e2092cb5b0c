// ASSERT_OK / EXPECT_OK: a Status or StatusOr<T> that must be OK, reported with the
// expression and the status when it is not.
#ifndef FLATSTORE_TESTS_SUPPORT_STATUS_MACROS_H_
#define FLATSTORE_TESTS_SUPPORT_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace flatstore::testing {

inline const absl::Status& statusOf(const absl::Status& s) { return s; }
template <class T>
const absl::Status& statusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

}  // namespace flatstore::testing

// The status is copied before the full expression ends: `expr` may be a temporary
// (`ASSERT_OK(child->send("go"))`), and a reference into it would dangle.
#define ASSERT_OK(expr)                                          \
  do {                                                           \
    const absl::Status _s(::flatstore::testing::statusOf(expr)); \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << _s;                 \
  } while (false)
#define EXPECT_OK(expr)                                          \
  do {                                                           \
    const absl::Status _s(::flatstore::testing::statusOf(expr)); \
    EXPECT_TRUE(_s.ok()) << #expr << ": " << _s;                 \
  } while (false)

#endif  // FLATSTORE_TESTS_SUPPORT_STATUS_MACROS_H_
