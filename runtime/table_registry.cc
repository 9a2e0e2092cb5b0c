#include "runtime/table_registry.h"

#include "flatstore/status.h"

namespace flatstore::internal {

absl::Status registerSqliteTable(Writer& writer, ReaderPool& readers, TableState& table) {
  bool stored = false;
  FLATSTORE_RETURN_IF_ERROR(readers.read([&](Connection& c) -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(stored, loadStoredTable(c, table));
    return absl::OkStatus();
  }));
  if (stored) return absl::OkStatus();
  TableState* raw = &table;
  return writer.runSync([raw](Connection& c) { return ensureTable(c, *raw); });
}

TableState* TableRegistry::findFast(const TableDescription& d) const {
  size_t used = fast_used_.load(std::memory_order_acquire);
  for (size_t i = 0; i < used; ++i) {
    if (fast_[i].desc.load(std::memory_order_acquire) != &d) continue;
    TableState* t = fast_[i].state.load(std::memory_order_acquire);
    if (t->desc.table_name == d.table_name) return t;
  }
  return nullptr;
}

void TableRegistry::publishFast(const TableDescription& d, TableState* state) {
  size_t used = fast_used_.load(std::memory_order_relaxed);
  if (used == kFastSlots) return;  // the rest are found under the mutex
  for (size_t i = 0; i < used; ++i) {
    if (fast_[i].desc.load(std::memory_order_relaxed) == &d) return;
  }
  fast_[used].state.store(state, std::memory_order_release);
  fast_[used].desc.store(&d, std::memory_order_release);
  fast_used_.store(used + 1, std::memory_order_release);
}

absl::StatusOr<TableState*> TableRegistry::get(const TableDescription& d) {
  if (closed_.load()) return absl::FailedPreconditionError("the workspace is shut down");
  if (TableState* t = findFast(d)) return t;
  std::string name(d.table_name);
  {
    absl::MutexLock lock(&mu_);
    if (closed_.load()) return absl::FailedPreconditionError("the workspace is shut down");
    auto it = tables_.find(name);
    if (it != tables_.end()) {
      publishFast(d, it->second.get());
      return it->second.get();
    }
  }
  auto state = std::make_unique<TableState>(d);
  TableState* raw = state.get();
  FLATSTORE_RETURN_IF_ERROR(register_(*raw));
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = tables_.emplace(name, std::move(state));
  publishFast(d, it->second.get());
  if (inserted) {
    for (size_t i = 0; i < d.indexes.size(); ++i) {
      if (!raw->indexReady(static_cast<int>(i))) {
        backfills_->addBackfill(raw);
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

void TableRegistry::close() { closed_.store(true); }

}  // namespace flatstore::internal
