// Internal: the untyped form of a query and what runs it, which the templates of
// fetch.h, workspace.h and transaction.h need. Not part of the API: these types change
// without notice; use Query<T> and FetchedResult<T>.
#ifndef FLATSTORE_DETAIL_QUERY_SOURCE_H_
#define FLATSTORE_DETAIL_QUERY_SOURCE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "flatstore/entity.h"
#include "flatstore/query.h"
#include "flatstore/table_description.h"
#include "flatstore/value.h"

namespace flatstore {

namespace internal {

// An untyped query: what Query<T> builds and the runtime executes.
struct QuerySpec {
  std::shared_ptr<const ExprNode> where;                 // null: every object
  std::vector<std::pair<const FieldInfo*, bool>> order;  // (field, descending)
  std::optional<int64_t> limit;
  int64_t offset = 0;
  // Primary key (or automatic id) lookup, set by getByKey; or a rowid lookup.
  std::optional<std::vector<Value>> key;
  std::optional<int64_t> rowid;
};

// One fetched object, verified.
struct RawRow {
  int64_t rowid = 0;
  Versionstamp versionstamp;
  ObjectBuffer bytes;
};

// Something queries run against: the workspace (a pooled read transaction per query),
// a snapshot, or a transaction (its snapshot plus its own changes).
class QuerySource {
 public:
  virtual ~QuerySource() = default;
  virtual absl::StatusOr<std::vector<RawRow>> runQuery(const TableDescription& table,
                                                       const QuerySpec& spec) = 0;
  virtual absl::StatusOr<int64_t> runCount(const TableDescription& table,
                                           const QuerySpec& spec) = 0;
  // The last commit sequence known before a query starts (its snapshot is at least as
  // new); subscriptions use it to tell whether a result may be stale.
  virtual uint64_t committedSequence() { return 0; }
};

}  // namespace internal

}  // namespace flatstore

#endif  // FLATSTORE_DETAIL_QUERY_SOURCE_H_
