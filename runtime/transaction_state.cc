#include "runtime/transaction_state.h"

#include <algorithm>
#include <string_view>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/object_check.h"
#include "runtime/scheduler.h"
#include "runtime/version_bridge.h"
#include "runtime/writer.h"

namespace flatstore::internal {
namespace {

bool keyComplete(const std::vector<Value>& key) {
  return std::none_of(key.begin(), key.end(), [](const Value& v) { return v.isNull(); });
}

// "table <name>", as messages about a table's changes begin.
std::string tableText(const TableDescription& d) {
  return absl::StrCat("table ", av(d.table_name));
}

// Compare-and-set conditions of a request against the object it finds (null: none).
absl::Status checkCondition(const TableDescription& d, const std::vector<Value>& key,
                            const Versionstamp* current, const ErasedChange& change) {
  if (!change.require_absent && !change.required_versionstamp.has_value()) {
    return absl::OkStatus();
  }
  std::string what = tableText(d);
  if (change.require_absent && current != nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": the request requires that no object has key ", keyText(key), ", but one does"));
  }
  if (change.required_versionstamp.has_value()) {
    if (current == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, ": the request requires object ", keyText(key), " at versionstamp ",
                       change.required_versionstamp->toString(), ", but it does not exist"));
    }
    if (*current != *change.required_versionstamp) {
      return absl::FailedPreconditionError(absl::StrCat(
          what, ": the request requires object ", keyText(key), " at versionstamp ",
          change.required_versionstamp->toString(), ", but it is at ", current->toString()));
    }
  }
  return absl::OkStatus();
}

// The top-level field of a field id path ("12.0": 12), as a bit of
// EncodedObject::changed_fields (ids of 63 and above share bit 63).
uint64_t fieldBit(std::string_view id_path) {
  int id = 0;
  for (char ch : id_path) {
    if (ch < '0' || ch > '9') break;
    id = std::min(id * 10 + (ch - '0'), 63);
  }
  return uint64_t{1} << id;
}

// The top-level fields `d`'s primary key is read from (key columns are "k<id path>").
uint64_t keyFields(const TableDescription& d) {
  uint64_t mask = 0;
  for (const KeyColumn& k : d.key_columns) mask |= fieldBit(k.column.substr(1));
  return mask;
}

// The top-level fields `d`'s indexes are read from.
uint64_t indexFields(const TableDescription& d) {
  uint64_t mask = 0;
  for (const IndexDescription& x : d.indexes) mask |= fieldBit(x.id_path);
  return mask;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// HandleState

void HandleState::complete(absl::StatusOr<TransactionResult> result) {
  std::vector<std::function<void(const absl::StatusOr<TransactionResult>&)>> callbacks;
  {
    absl::MutexLock lock(&mu_);
    result_ = result;
    done_ = true;
    callbacks.swap(callbacks_);
  }
  for (auto& cb : callbacks) cb(result);
}

absl::StatusOr<TransactionResult> HandleState::wait() {
  std::function<absl::Status()> check;
  std::function<void()> end;
  {
    absl::MutexLock lock(&mu_);
    if (done_) return result_;
    if (onWriterThread()) {
      return absl::FailedPreconditionError(
          "waiting for a transaction on flatstore's writer thread would deadlock: an "
          "onComplete callback, or a closure run under the write lock, waited for "
          "another transaction");
    }
    check = wait_check_;
    end = wait_end_;
  }
  if (check) FLATSTORE_RETURN_IF_ERROR(check());
  // A closure that waits gives its worker slot to the transactions it may wait for.
  Scheduler::SlotLoan loan;
  absl::Cleanup ended = [&end] {
    if (end) end();
  };
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&done_));
  return result_;
}

void HandleState::setWaitCheck(std::function<absl::Status()> check, std::function<void()> end) {
  absl::MutexLock lock(&mu_);
  wait_check_ = std::move(check);
  wait_end_ = std::move(end);
}

void HandleState::giveTurn() {
  absl::MutexLock lock(&mu_);
  turn_ = true;
}

bool HandleState::awaitTurn() {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_ || turn_; };
  mu_.Await(absl::Condition(&ready));
  if (done_) return false;
  turn_ = false;
  return true;
}

bool HandleState::done() {
  absl::MutexLock lock(&mu_);
  return done_;
}

void HandleState::onComplete(
    std::function<void(const absl::StatusOr<TransactionResult>&)> callback) {
  {
    absl::MutexLock lock(&mu_);
    if (!done_) {
      callbacks_.push_back(std::move(callback));
      return;
    }
  }
  absl::StatusOr<TransactionResult> result;
  {
    absl::MutexLock lock(&mu_);
    result = result_;
  }
  callback(result);
}

// ---------------------------------------------------------------------------------------
// TransactionState

// Queries of one declared table inside a transaction: snapshot plus pending changes.
class TransactionState::Source : public QuerySource {
 public:
  Source(TransactionState* txn, TableState* table) : txn_(txn), table_(table) {}
  absl::StatusOr<std::vector<RawRow>> runQuery(const TableDescription& d,
                                               const QuerySpec& spec) override {
    FLATSTORE_RETURN_IF_ERROR(check(d));
    if (txn_->reads_ != nullptr) txn_->reads_->scanned.insert(table_->id);
    return txn_->snapshot_->query(*table_, spec, pending());
  }
  absl::StatusOr<int64_t> runCount(const TableDescription& d, const QuerySpec& spec) override {
    FLATSTORE_RETURN_IF_ERROR(check(d));
    if (txn_->reads_ != nullptr) txn_->reads_->scanned.insert(table_->id);
    return txn_->snapshot_->count(*table_, spec, pending());
  }

 private:
  absl::Status check(const TableDescription& d) {
    if (table_ == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("table ", av(d.table_name),
                       " was not declared by this transaction (name it in performChanges<...>)"));
    }
    return absl::OkStatus();
  }
  const PendingTable* pending() {
    auto it = txn_->pending_.find(table_);
    return it == txn_->pending_.end() ? nullptr : &it->second;
  }
  TransactionState* txn_;
  TableState* table_;
};

TransactionState::TransactionState(ReadView* snapshot, std::vector<TableState*> tables)
    : snapshot_(snapshot), tables_(std::move(tables)) {
  bridges_.reserve(tables_.size());
  for (const TableState* t : tables_) bridges_.push_back(t->bridge());
}

const VersionBridge* TransactionState::bridgeOf(const TableState* t) const {
  for (size_t i = 0; i < tables_.size(); ++i) {
    if (tables_[i] == t) return bridges_[i];
  }
  return nullptr;
}

TransactionState::~TransactionState() = default;

TableState* TransactionState::declared(const TableDescription& table) {
  for (TableState* t : tables_) {
    if (&t->desc == &table || t->desc.table_name == table.table_name) return t;
  }
  return nullptr;
}

QuerySource* TransactionState::source(const TableDescription& table) {
  TableState* t = declared(table);
  auto& slot = sources_[t];
  if (slot == nullptr) slot = std::make_unique<Source>(this, t);
  return slot.get();
}

std::vector<EncodedChange> TransactionState::takeChanges() {
  // The latest bytes of each created or changed object are its pending entry's.
  for (auto& [table, p] : pending_) {
    for (auto* entries : {&p.inserts, &p.by_rowid}) {
      for (auto& [id, e] : *entries) {
        if (!e.deleted) changes_[e.change].bytes = std::move(e.bytes);
      }
    }
  }
  pending_.clear();
  // In place: a large transaction's changes are not copied into a second array.
  std::erase_if(changes_, [](const EncodedChange& c) { return c.op == EncodedChange::Op::kNone; });
  std::vector<EncodedChange> out = std::move(changes_);
  changes_.clear();
  return out;
}

absl::StatusOr<std::optional<TransactionState::Current>> TransactionState::find(
    TableState& t, int64_t rowid, const std::vector<Value>* key) {
  PendingTable& p = pending_[&t];
  auto fromEntry = [this](const PendingTable::Entry& e, bool insert) -> std::optional<Current> {
    if (e.deleted) return std::nullopt;
    return Current{e.rowid, e.sort_id, ObjectBuffer::copyOf(e.bytes.span()), changes_[e.change].key,
                   insert,  {}};
  };
  if (rowid != 0) {
    auto it = p.by_rowid.find(rowid);
    if (it != p.by_rowid.end()) return fromEntry(it->second, false);
    if (reads_ != nullptr) reads_->rowids.emplace(t.id, rowid);
    FLATSTORE_ASSIGN_OR_RETURN(auto row, snapshot_->rowByRowid(t, rowid));
    if (!row.has_value()) return std::optional<Current>();
    Current c{row->rowid, row->rowid, std::move(row->bytes), {}, false, row->versionstamp};
    t.desc.key_of(c.bytes.data(), &c.key);
    return std::optional<Current>(std::move(c));
  }
  if (key == nullptr || key->empty()) return std::optional<Current>();
  std::string encoded = PendingTable::encodeKey(*key);
  auto k = p.key_to_sort_id.find(encoded);
  if (k != p.key_to_sort_id.end()) {
    auto ins = p.inserts.find(k->second);
    if (ins != p.inserts.end()) return fromEntry(ins->second, true);
    auto up = p.by_rowid.find(k->second);
    if (up != p.by_rowid.end()) return fromEntry(up->second, false);
  }
  if (p.removed_keys.count(encoded) != 0) return std::optional<Current>();
  if (reads_ != nullptr) reads_->keys.insert(keyOfEncoded(t.id, encoded));
  FLATSTORE_ASSIGN_OR_RETURN(auto row, snapshot_->rowByKey(t, *key));
  if (!row.has_value()) return std::optional<Current>();
  auto up = p.by_rowid.find(row->rowid);
  if (up != p.by_rowid.end()) return fromEntry(up->second, false);
  Current c{row->rowid, row->rowid, std::move(row->bytes), *key, false, row->versionstamp};
  return std::optional<Current>(std::move(c));
}

absl::StatusOr<bool> TransactionState::findPending(TableState& t, const std::vector<Value>& key,
                                                   std::optional<Current>* current,
                                                   std::string* encoded_key) {
  PendingTable& p = pending_[&t];
  std::string encoded = PendingTable::encodeKey(key);
  auto k = p.key_to_sort_id.find(encoded);
  if (k != p.key_to_sort_id.end()) {
    // This transaction has the key: find() answers from its own changes.
    FLATSTORE_ASSIGN_OR_RETURN(*current, find(t, 0, &key));
    return false;
  }
  current->reset();
  if (!p.removed_keys.empty() && p.removed_keys.count(encoded) != 0) return false;  // freed here
  if (reads_ != nullptr) reads_->keys.insert(keyOfEncoded(t.id, encoded));
  *encoded_key = std::move(encoded);
  return true;
}

absl::StatusOr<bool> TransactionState::keysWereFree() {
  for (auto& [t, keys] : unchecked_keys_) {
    FLATSTORE_ASSIGN_OR_RETURN(bool any, snapshot_->anyKeyExists(*t, keys));
    if (any) return false;
  }
  unchecked_keys_.clear();
  return true;
}

void TransactionState::dropInsertKey(TableState& t, EncodedChange& insert) {
  if (!insert.key_unchecked) return;
  // The key will not reach the table, whose primary key would have refused it if it
  // was taken: a creation that should have failed would go unnoticed.
  unchecked_keys_[&t].push_back(insert.key);
  insert.key_unchecked = false;
}

void TransactionState::changesWillNotApply() {
  if (!keys_unchecked_) return;
  for (EncodedChange& c : changes_) {
    if (c.key_unchecked) dropInsertKey(*c.table, c);
  }
}

absl::StatusOr<bool> TransactionState::keyTaken(TableState& t, const std::vector<Value>& key) {
  FLATSTORE_ASSIGN_OR_RETURN(auto current, find(t, 0, &key));
  return current.has_value();
}

void TransactionState::recordInsert(TableState& t, EncodedObject encoded, std::vector<Value> key,
                                    std::vector<Value> index_values, std::string encoded_key) {
  PendingTable& p = pending_[&t];
  PendingTable::Entry e;
  e.sort_id = p.next_insert_id++;
  e.change = changes_.size();
  bytes_ += static_cast<int64_t>(encoded.bytes.size());
  // The bytes stay with the entry (read-your-writes) until takeChanges() hands them on.
  e.bytes = std::move(encoded.bytes);
  if (!t.desc.hasAutomaticId()) {
    std::string encoded =
        encoded_key.empty() ? PendingTable::encodeKey(key) : std::move(encoded_key);
    if (!p.removed_keys.empty()) p.removed_keys.erase(encoded);
    p.key_to_sort_id.insert_or_assign(std::move(encoded), e.sort_id);
  }
  EncodedChange c;
  c.op = EncodedChange::Op::kInsert;
  c.table = &t;
  c.bridge = bridgeOf(&t);
  c.key = std::move(key);
  c.index_values = std::move(index_values);
  changes_.push_back(std::move(c));
  p.inserts.emplace(e.sort_id, std::move(e));
}

template <class MakeChange>
PendingTable::Entry& TransactionState::committedEntry(PendingTable& p, int64_t rowid,
                                                      MakeChange make_change) {
  auto it = p.by_rowid.find(rowid);
  if (it != p.by_rowid.end()) return it->second;
  // The first change of a committed object in this transaction.
  PendingTable::Entry e;
  e.rowid = rowid;
  e.sort_id = rowid;
  e.change = changes_.size();
  changes_.push_back(make_change());
  return p.by_rowid.emplace(rowid, std::move(e)).first->second;
}

void TransactionState::recordUpdate(TableState& t, Current& current, EncodedObject encoded,
                                    std::optional<std::vector<Value>> key,
                                    std::optional<std::vector<Value>> index_values) {
  PendingTable& p = pending_[&t];
  bool key_changed = !t.desc.hasAutomaticId() && key.has_value() && !(*key == current.key);
  if (key_changed) {
    std::string old_key = PendingTable::encodeKey(current.key);
    std::string new_key = PendingTable::encodeKey(*key);
    p.key_to_sort_id.erase(old_key);
    p.removed_keys.insert(old_key);
    p.removed_keys.erase(new_key);
    p.key_to_sort_id[new_key] = current.sort_id;
  }
  bytes_ += static_cast<int64_t>(encoded.bytes.size());
  PendingTable::Entry* entry = nullptr;
  // Whether this is the first change of a committed object here: its change has no key
  // and index values yet.
  bool first = false;
  if (current.pending_insert) {
    entry = &p.inserts.at(current.sort_id);
    if (key_changed) dropInsertKey(t, changes_[entry->change]);
  } else {
    entry = &committedEntry(p, current.rowid, [&] {
      first = true;
      EncodedChange c;
      c.op = EncodedChange::Op::kUpdate;
      c.table = &t;
      c.bridge = bridgeOf(&t);
      c.rowid = current.rowid;
      // Decoded once: into index_values as well when the change leaves them.
      c.same_index_values = !index_values.has_value();
      t.indexValuesOf(current.bytes.data(), bridgeOf(&t),
                      c.same_index_values ? &c.index_values : &c.old_index_values);
      c.base_version = current.versionstamp;
      c.changed_fields = 0;
      if (!t.desc.hasAutomaticId() && !key_changed) {
        p.key_to_sort_id[PendingTable::encodeKey(current.key)] = current.rowid;
      }
      return c;
    });
  }
  entry->bytes = std::move(encoded.bytes);  // handed on by takeChanges()
  EncodedChange& c = changes_[entry->change];
  if (c.op == EncodedChange::Op::kUpdate) {
    c.key_changed = c.key_changed || key_changed;
    c.changed_fields |= encoded.changed_fields;
  }
  // A later change of an object keeps what its earlier one recorded where it left the
  // key or the index values as they were.
  if (key.has_value()) {
    c.key = std::move(*key);
  } else if (first) {
    c.key = std::move(current.key);
  }
  if (index_values.has_value()) {
    if (c.same_index_values) {
      // An earlier change left them: what it kept are the values before the changes.
      c.old_index_values = std::move(c.index_values);
      c.same_index_values = false;
    }
    c.index_values = std::move(*index_values);
  }
}

void TransactionState::recordDelete(TableState& t, Current& current) {
  PendingTable& p = pending_[&t];
  if (!t.desc.hasAutomaticId()) {
    std::string encoded = PendingTable::encodeKey(current.key);
    p.key_to_sort_id.erase(encoded);
    p.removed_keys.insert(encoded);
  }
  if (current.pending_insert) {
    // Created and deleted in one transaction: nothing to write.
    auto it = p.inserts.find(current.sort_id);
    dropInsertKey(t, changes_[it->second.change]);
    changes_[it->second.change].op = EncodedChange::Op::kNone;
    p.inserts.erase(it);
    return;
  }
  PendingTable::Entry& entry = committedEntry(p, current.rowid, [] { return EncodedChange{}; });
  entry.deleted = true;
  EncodedChange& c = changes_[entry.change];
  c.op = EncodedChange::Op::kDelete;
  c.table = &t;
  c.rowid = current.rowid;
  c.key = std::move(current.key);  // the caller is done with it
  c.bytes = ObjectBuffer();
}

absl::StatusOr<SubmitOutcome> TransactionState::submit(const TableDescription& d,
                                                       const ErasedChange& change) {
  TableState* t = declared(d);
  if (t == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("table ", av(d.table_name),
                     " was not declared by this transaction (name it in performChanges<...>)"));
  }
  if (aborted_) return absl::FailedPreconditionError("the transaction was aborted");
  // For messages only: built when one is.
  auto what = [&d] { return tableText(d); };

  const VersionBridge* bridge = bridgeOf(t);
  // What is recorded has passed the verifier, so reads never meet it as DataLoss.
  auto encode = [&](std::span<const uint8_t> current) -> absl::StatusOr<EncodedObject> {
    FLATSTORE_ASSIGN_OR_RETURN(EncodedObject e, change.encode(change.request, current));
    if (!e.changed) return e;
    if (!e.in_place) FLATSTORE_RETURN_IF_ERROR(checkEncodedObject(d, e.bytes.span()));
    if (bridge != nullptr && !current.empty() && bridge->mustRecompose(current.data())) {
      // The program's encoding dropped fields it does not write: keep them.
      FLATSTORE_ASSIGN_OR_RETURN(
          e.bytes, bridge->recompose(current.data(), e.bytes.data(), e.changed_fields));
      FLATSTORE_RETURN_IF_ERROR(checkEncodedObject(d, e.bytes.span(), bridge));
    }
    return e;
  };
  auto encodeNew = [&]() { return encode({}); };
  auto keyOf = [&](const EncodedObject& e) {
    std::vector<Value> key;
    d.key_of(e.bytes.data(), &key);
    return key;
  };
  auto indexValuesOf = [&](const EncodedObject& e) {
    std::vector<Value> values;
    t->indexValuesOf(e.bytes.data(), bridge, &values);
    return values;
  };

  switch (change.kind) {
    case ChangeKind::kCreation:
    case ChangeKind::kUpsert: {
      FLATSTORE_ASSIGN_OR_RETURN(EncodedObject fresh, encodeNew());
      std::vector<Value> key = keyOf(fresh);
      if (!keyComplete(key)) {
        return absl::InvalidArgumentError(
            absl::StrCat(what(), ": the primary key ", keyText(key), " has a missing field"));
      }
      bool key_unchecked = false;
      std::string encoded_key;  // of a key taken as free: findPending encoded it
      if (!d.hasAutomaticId()) {
        std::optional<Current> current;
        if (change.kind == ChangeKind::kCreation && (defer_key_checks_ || keys_at_apply_) &&
            checkCondition(d, key, nullptr, change).ok()) {
          // Taken as free, unless this transaction has it; checked when the change is
          // applied (leaveKeyChecksToApply), or with the others when the closure is
          // done (keysWereFree).
          FLATSTORE_ASSIGN_OR_RETURN(key_unchecked, findPending(*t, key, &current, &encoded_key));
          if (key_unchecked && !keys_at_apply_) {
            unchecked_keys_[t].push_back(key);
            key_unchecked = false;
          }
        } else {
          FLATSTORE_ASSIGN_OR_RETURN(current, find(*t, 0, &key));
        }
        FLATSTORE_RETURN_IF_ERROR(
            checkCondition(d, key, current ? &current->versionstamp : nullptr, change));
        if (current.has_value()) {
          if (change.kind == ChangeKind::kCreation) {
            return absl::AlreadyExistsError(absl::StrCat(what(), ": an object with primary key ",
                                                         keyText(key), " already exists"));
          }
          FLATSTORE_ASSIGN_OR_RETURN(EncodedObject updated, encode(current->bytes.span()));
          if (!updated.changed) return SubmitOutcome::kUnchanged;
          std::vector<Value> new_key = keyOf(updated);
          std::vector<Value> values = indexValuesOf(updated);
          recordUpdate(*t, *current, std::move(updated), std::move(new_key), std::move(values));
          return SubmitOutcome::kUpdated;
        }
      }
      std::vector<Value> values = indexValuesOf(fresh);
      recordInsert(*t, std::move(fresh), std::move(key), std::move(values), std::move(encoded_key));
      if (key_unchecked) {
        changes_.back().key_unchecked = true;
        keys_unchecked_ = true;
      }
      return SubmitOutcome::kInserted;
    }
    case ChangeKind::kChange:
    case ChangeKind::kDeletion: {
      FLATSTORE_ASSIGN_OR_RETURN(auto current, find(*t, change.target_rowid, change.target_key));
      if (!current.has_value()) {
        return absl::NotFoundError(
            absl::StrCat(what(), ": no object ",
                         change.target_rowid != 0
                             ? absl::StrCat("with rowid ", change.target_rowid)
                             : absl::StrCat("with primary key ", keyText(*change.target_key)),
                         change.kind == ChangeKind::kChange ? " to change" : " to delete"));
      }
      FLATSTORE_RETURN_IF_ERROR(checkCondition(d, current->key, &current->versionstamp, change));
      if (change.kind == ChangeKind::kDeletion) {
        recordDelete(*t, *current);
        return SubmitOutcome::kDeleted;
      }
      FLATSTORE_ASSIGN_OR_RETURN(EncodedObject updated, encode(current->bytes.span()));
      if (!updated.changed) return SubmitOutcome::kUnchanged;
      // A change that left every field the key is read from as it was keeps the key, and
      // one that left every indexed field keeps the index values: they are not decoded
      // again (changed_fields may name more fields than changed, never fewer). Not with a
      // bridge, whose indexes (a newer program's) need not be this program's.
      std::optional<std::vector<Value>> new_key;
      if ((updated.changed_fields & keyFields(d)) != 0) {
        new_key = keyOf(updated);
        if (!keyComplete(*new_key)) {
          return absl::InvalidArgumentError(absl::StrCat(
              what(), ": the primary key ", keyText(*new_key), " has a missing field"));
        }
        if (!d.hasAutomaticId() && !(*new_key == current->key)) {
          FLATSTORE_ASSIGN_OR_RETURN(bool taken, keyTaken(*t, *new_key));
          if (taken) {
            return absl::AlreadyExistsError(absl::StrCat(what(), ": an object with primary key ",
                                                         keyText(*new_key), " already exists"));
          }
        }
      }
      std::optional<std::vector<Value>> values;
      if (bridge != nullptr || (updated.changed_fields & indexFields(d)) != 0) {
        values = indexValuesOf(updated);
      }
      recordUpdate(*t, *current, std::move(updated), std::move(new_key), std::move(values));
      return SubmitOutcome::kUpdated;
    }
  }
  return absl::InternalError("unknown change kind");
}

}  // namespace flatstore::internal
