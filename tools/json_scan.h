// Just enough JSON reading for the tool's own line formats: find a top-level member of
// an object and read a string or a number. Objects themselves are parsed by flatc's
// parser with the stored schema.
#ifndef FLATSTORE_TOOLS_JSON_SCAN_H_
#define FLATSTORE_TOOLS_JSON_SCAN_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace flatstore::cli {

// The text of member `name` of the JSON object `json` (a top-level member only), or
// nullopt when absent. InvalidArgument when `json` is not an object.
absl::StatusOr<std::optional<std::string_view>> findMember(std::string_view json,
                                                           std::string_view name);

// The content of a JSON string literal (escapes decoded, \u as UTF-8).
absl::StatusOr<std::string> readString(std::string_view literal);

}  // namespace flatstore::cli

#endif  // FLATSTORE_TOOLS_JSON_SCAN_H_
