// Bridges std::string_view and the Abseil that Debian 12 ships, which is built with its
// own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW is 0) and so does not accept
// std::string_view arguments.
#ifndef FLATSTORE_RUNTIME_ABSL_COMPAT_H_
#define FLATSTORE_RUNTIME_ABSL_COMPAT_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace flatstore::internal {

inline absl::string_view av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_ABSL_COMPAT_H_
