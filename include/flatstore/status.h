// Status helpers shared by the runtime, generated code and users.
//
// flatstore reports every failure as an absl::Status (or absl::StatusOr<T>) with the
// most specific canonical code; no exception crosses the public API. The Abseil release
// that Debian 12 ships has no status macros, so flatstore brings its own.
#ifndef FLATSTORE_STATUS_H_
#define FLATSTORE_STATUS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FLATSTORE_STATUS_CONCAT_INNER_(a, b) a##b
#define FLATSTORE_STATUS_CONCAT_(a, b) FLATSTORE_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the calling function if it is
// not OK.
#define FLATSTORE_RETURN_IF_ERROR(expr)                                       \
  do {                                                                        \
    if (::absl::Status _flatstore_status = (expr); !_flatstore_status.ok()) { \
      return _flatstore_status;                                               \
    }                                                                         \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status from the calling
// function, otherwise moves the value into `lhs`, which may be a declaration
// (`auto x`) or an existing lvalue.
#define FLATSTORE_ASSIGN_OR_RETURN(lhs, rexpr) \
  FLATSTORE_ASSIGN_OR_RETURN_IMPL_(FLATSTORE_STATUS_CONCAT_(_flatstore_or_, __LINE__), lhs, rexpr)

#define FLATSTORE_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                     \
  if (!tmp.ok()) return std::move(tmp).status();          \
  lhs = std::move(tmp).value()

#endif  // FLATSTORE_STATUS_H_
