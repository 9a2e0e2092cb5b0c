// Internal: declares absl::Status and absl::StatusOr<T> without defining them, for the
// headers that generated headers include (entity.h, table_description.h, the generated
// `<stem>_flatstore.h`). They only name these types in declarations of functions that
// are defined elsewhere; defining them would cost every file that includes a generated
// header Abseil's status.h and statusor.h (Cord, StrCat and more), about as much
// compile time again as flatc's header. Code that calls such a function, or uses the
// types otherwise, includes "absl/status/statusor.h" or "flatstore/status.h" (or
// "flatstore/workspace.h", which does). Not part of the API.
#ifndef FLATSTORE_DETAIL_STATUS_FWD_H_
#define FLATSTORE_DETAIL_STATUS_FWD_H_

#include "absl/base/config.h"

namespace absl {
ABSL_NAMESPACE_BEGIN

class Status;
template <typename T>
class StatusOr;

ABSL_NAMESPACE_END
}  // namespace absl

#endif  // FLATSTORE_DETAIL_STATUS_FWD_H_
