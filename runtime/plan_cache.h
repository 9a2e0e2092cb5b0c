// PlanCache: the SQL of each query shape a table has been queried with.
//
// A query's SQL depends on its shape only: which fields it compares and how, which of
// its terms SQLite can evaluate (an index still being back-filled cannot), its order,
// whether it has a limit, and whether the transaction running it has pending changes.
// Its values are bound. So a query of a shape seen before takes its SQL from here and
// binds its values, instead of building the SQL again (query_exec.cc builds the shape's
// key, which names everything the SQL depends on).
//
// Bounded: past kMaxShapes the cache starts over, so that a program that makes many
// shapes (an IN list of every length, say) keeps a bounded set.
//
// Thread-safety: find() and add() from any thread.
#ifndef FLATSTORE_RUNTIME_PLAN_CACHE_H_
#define FLATSTORE_RUNTIME_PLAN_CACHE_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace flatstore::internal {

// What a query shape compiles to.
struct CachedPlan {
  std::string sql;
  // The order is applied by SQLite (else in memory, after the rows are read).
  bool order_in_sql = false;
  // So are LIMIT and OFFSET (bound as the last two parameters when the query has them).
  bool limit_in_sql = false;
  // The order is the rowid alone and every row is wanted: the SQL has no ORDER BY and
  // the rows are put in rowid order in memory, which costs less than SQLite's sorter
  // when the rows come by an index (a plain scan already yields them in rowid order).
  bool rowid_order_in_memory = false;
};

class PlanCache {
 public:
  static constexpr size_t kMaxShapes = 64;

  // The plan of the shape keyed `shape`, or null.
  std::shared_ptr<const CachedPlan> find(std::string_view shape) const ABSL_LOCKS_EXCLUDED(mu_);
  void add(std::string shape, std::shared_ptr<const CachedPlan> plan) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const CachedPlan>> plans_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_PLAN_CACHE_H_
