// SqliteReadView: a ReadView (storage_engine.h) on one SQLite connection: a reader's
// (ReaderPool hands them out as leases) or the writer's own, for a closure that runs
// inside the write transaction, where it sees every commit before it.
//
// A view either holds a read transaction it began (a snapshot for several statements)
// or reads in the transaction its connection is in, or in SQLite's implicit one per
// statement (a fetch: one statement reads one consistent state, with no BEGIN and
// COMMIT around it).
//
// Thread-safety: used by one thread at a time, as its connection.
#ifndef FLATSTORE_RUNTIME_SQLITE_READ_VIEW_H_
#define FLATSTORE_RUNTIME_SQLITE_READ_VIEW_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/sqlite.h"
#include "runtime/storage_engine.h"

namespace flatstore::internal {

class SqliteReadView : public ReadView {
 public:
  // Reads on `c`, which outlives the view. `origin` marks this workspace's commits in
  // the change log.
  SqliteReadView(Connection* c, int64_t origin) : c_(c), origin_(origin) {}
  ~SqliteReadView() override { end(); }

  // Starts the view's own read transaction and pins its snapshot (SQLite takes it at
  // the first read); end() or the destructor ends it.
  absl::Status begin();
  // Ends the read transaction begin() started, if any. A subclass that owns the
  // connection calls it before giving the connection up.
  void end();
  Connection& connection() { return *c_; }

  absl::StatusOr<ReadMark> mark() override;
  absl::StatusOr<int> changedSince(std::span<const TableState* const> tables,
                                   const ReadMark& since) override;
  absl::StatusOr<std::optional<RawRow>> rowByRowid(const TableState& table, int64_t rowid) override;
  absl::StatusOr<std::optional<RawRow>> rowByKey(const TableState& table,
                                                 const std::vector<Value>& key) override;
  absl::StatusOr<std::vector<RawRow>> query(const TableState& table, const QuerySpec& spec,
                                            const PendingTable* pending) override;
  absl::StatusOr<int64_t> count(const TableState& table, const QuerySpec& spec,
                                const PendingTable* pending) override;
  absl::StatusOr<LogChanges> changesSince(const TableState& table, Versionstamp since) override;
  absl::StatusOr<Versionstamp> latestVersionstamp() override;
  absl::StatusOr<std::optional<Dictionary::Record>> entry(std::string_view key) override;

 private:
  Connection* const c_;
  const int64_t origin_;
  bool in_transaction_ = false;
  std::optional<ReadMark> mark_;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_SQLITE_READ_VIEW_H_
