// Reads: everything that reads committed state outside closures. Fetches and counts
// (Query<T> through the workspace), snapshots, changesSince, latestVersionstamp, and
// the re-queries that keep subscriptions exact.
//
// Each read checks a connection out of the reader pool and runs one read transaction
// (a fetch or count is one statement and needs only SQLite's implicit one), so reads
// never wait for the writer, nor the writer for them.
//
// Thread-safety: all methods are thread-safe.
#ifndef FLATSTORE_RUNTIME_READS_H_
#define FLATSTORE_RUNTIME_READS_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flatstore/fetch.h"
#include "flatstore/workspace.h"
#include "runtime/observers.h"
#include "runtime/reader_pool.h"
#include "runtime/table_registry.h"

namespace flatstore::internal {

class Reads : public QuerySource {
 public:
  // `origin` marks this workspace's commits in the change log; `committed` tells the
  // last commit sequence this workspace made or saw.
  Reads(ReaderPool* readers, TableRegistry* tables, int64_t origin,
        std::function<uint64_t()> committed)
      : readers_(readers), tables_(tables), origin_(origin), committed_(std::move(committed)) {}

  // QuerySource: one read transaction per query.
  absl::StatusOr<std::vector<RawRow>> runQuery(const TableDescription& table,
                                               const QuerySpec& spec) override;
  absl::StatusOr<int64_t> runCount(const TableDescription& table, const QuerySpec& spec) override;
  uint64_t committedSequence() override { return committed_(); }

  // Runs `fn` with a Snapshot whose queries share one read transaction.
  absl::Status snapshot(const std::function<absl::Status(Workspace::Snapshot&)>& fn);
  // The objects of `table` changed after `since` and the keys of those deleted, from the
  // change log; `through` is the newest change it covers. OutOfRange when the log was
  // pruned past `since`.
  absl::Status changesSince(const TableDescription& table, Versionstamp since,
                            std::vector<RawRow>* changed, std::vector<std::vector<Value>>* deleted,
                            Versionstamp* through);
  // The versionstamp of the newest change in the file.
  absl::StatusOr<Versionstamp> latestVersionstamp();
  // A subscription's re-query (ObserverHub::Requery).
  absl::StatusOr<ObserverHub::RequeryResult> requery(TableState* table, const QuerySpec& spec,
                                                     const ObserverHub::TailQuery* tail);

 private:
  ReaderPool* const readers_;
  TableRegistry* const tables_;
  const int64_t origin_;
  const std::function<uint64_t()> committed_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_READS_H_
