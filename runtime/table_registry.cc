#include "runtime/table_registry.h"

#include "flatstore/status.h"

namespace flatstore::internal {

absl::StatusOr<TableState*> TableRegistry::get(const TableDescription& d) {
  std::string name(d.table_name);
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::FailedPreconditionError("the workspace is shut down");
    auto it = tables_.find(name);
    if (it != tables_.end()) return it->second.get();
  }
  auto state = std::make_unique<TableState>(d);
  TableState* raw = state.get();
  bool stored = false;
  FLATSTORE_RETURN_IF_ERROR(readers_->read([&](Connection& c) -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(stored, loadStoredTable(c, *raw));
    return absl::OkStatus();
  }));
  if (!stored) {
    FLATSTORE_RETURN_IF_ERROR(
        writer_->runSync([raw](Connection& c) { return ensureTable(c, *raw); }));
  }
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = tables_.emplace(name, std::move(state));
  if (inserted) {
    for (size_t i = 0; i < d.indexes.size(); ++i) {
      if (!raw->indexReady(static_cast<int>(i))) {
        writer_->addBackfill(raw);
        break;
      }
    }
  }
  return it->second.get();
}

std::vector<TableState*> TableRegistry::observed() {
  std::vector<TableState*> out;
  absl::MutexLock lock(&mu_);
  for (auto& [name, t] : tables_) {
    if (t->subscriptions.load() > 0) out.push_back(t.get());
  }
  return out;
}

void TableRegistry::close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

}  // namespace flatstore::internal
