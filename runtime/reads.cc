#include "runtime/reads.h"

#include "flatstore/status.h"

namespace flatstore::internal {

absl::StatusOr<std::vector<RawRow>> Reads::runQuery(const TableDescription& d,
                                                    const QuerySpec& spec) {
  FLATSTORE_ASSIGN_OR_RETURN(TableState * t, tables_->get(d));
  // Without pending changes a query is one statement: no snapshot of its own.
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<ReadView> view, views_->read());
  return view->query(*t, spec, nullptr);
}

absl::StatusOr<int64_t> Reads::runCount(const TableDescription& d, const QuerySpec& spec) {
  FLATSTORE_ASSIGN_OR_RETURN(TableState * t, tables_->get(d));
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<ReadView> view, views_->read());
  return view->count(*t, spec, nullptr);
}

absl::Status Reads::snapshot(const std::function<absl::Status(Workspace::Snapshot&)>& fn) {
  // A source that runs every query on one held snapshot.
  class HeldSource : public QuerySource {
   public:
    HeldSource(TableRegistry* tables, ReadView* view) : tables_(tables), view_(view) {}
    absl::StatusOr<std::vector<RawRow>> runQuery(const TableDescription& d,
                                                 const QuerySpec& spec) override {
      FLATSTORE_ASSIGN_OR_RETURN(TableState * t, tables_->get(d));
      return view_->query(*t, spec, nullptr);
    }
    absl::StatusOr<int64_t> runCount(const TableDescription& d, const QuerySpec& spec) override {
      FLATSTORE_ASSIGN_OR_RETURN(TableState * t, tables_->get(d));
      return view_->count(*t, spec, nullptr);
    }

   private:
    TableRegistry* tables_;
    ReadView* view_;
  };
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<ReadView> view, views_->snapshot());
  HeldSource source(tables_, view.get());
  Workspace::Snapshot snap(&source);
  return fn(snap);
}

absl::StatusOr<Versionstamp> Reads::latestVersionstamp() {
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<ReadView> view, views_->read());
  return view->latestVersionstamp();
}

absl::Status Reads::changesSince(const TableDescription& d, Versionstamp since,
                                 std::vector<RawRow>* changed,
                                 std::vector<std::vector<Value>>* deleted, Versionstamp* through) {
  FLATSTORE_ASSIGN_OR_RETURN(TableState * t, tables_->get(d));
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<ReadView> view, views_->snapshot());
  FLATSTORE_ASSIGN_OR_RETURN(LogChanges changes, view->changesSince(*t, since));
  *changed = std::move(changes.changed);
  *deleted = std::move(changes.deleted);
  *through = changes.through;
  return absl::OkStatus();
}

absl::StatusOr<ObserverHub::RequeryResult> Reads::requery(TableState* t, const QuerySpec& spec,
                                                          const ObserverHub::TailQuery* tail) {
  ObserverHub::RequeryResult out;
  // Every commit counted before the snapshot is in it.
  const uint64_t before = marks_are_sequences_ ? 0 : committed_();
  FLATSTORE_ASSIGN_OR_RETURN(std::unique_ptr<ReadView> view, views_->snapshot());
  FLATSTORE_ASSIGN_OR_RETURN(ReadMark mark, view->mark());
  out.sequence = marks_are_sequences_ ? mark.sequence : before;
  // The tail is taken only where a mark tells exactly which commits a snapshot has.
  if (tail != nullptr && marks_are_sequences_ && mark.sequence == tail->at) {
    const TableState* tables[] = {t};
    FLATSTORE_ASSIGN_OR_RETURN(int changed, view->changedSince(tables, ReadMark{tail->since, {}}));
    out.tail = changed < 0;
  }
  FLATSTORE_ASSIGN_OR_RETURN(out.rows, view->query(*t, out.tail ? tail->spec : spec, nullptr));
  return out;
}

}  // namespace flatstore::internal
