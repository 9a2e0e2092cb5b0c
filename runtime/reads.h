// Reads: everything that reads committed state outside closures. Fetches and counts
// (Query<T> through the workspace), snapshots, changesSince, latestVersionstamp, and
// the re-queries that keep subscriptions exact.
//
// Each read takes a view from the engine's ReadViews (storage_engine.h; on SQLite a
// connection of the reader pool): read() for one statement (a fetch or a count),
// snapshot() for several. So reads never wait for the writer, nor the writer for them.
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
#include "runtime/storage_engine.h"
#include "runtime/table_registry.h"

namespace flatstore::internal {

class Reads : public QuerySource {
 public:
  // `committed` tells the last commit sequence this workspace made or saw.
  // `marks_are_sequences`: a view's mark is the commit sequence it sees (SQLite); when
  // not (PostgreSQL), a re-query is placed at `committed` as read before its snapshot.
  Reads(ReadViews* views, TableRegistry* tables, std::function<uint64_t()> committed,
        bool marks_are_sequences = true)
      : views_(views),
        tables_(tables),
        committed_(std::move(committed)),
        marks_are_sequences_(marks_are_sequences) {}

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
  ReadViews* const views_;
  TableRegistry* const tables_;
  const std::function<uint64_t()> committed_;
  const bool marks_are_sequences_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_READS_H_
