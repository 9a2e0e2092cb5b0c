#include "runtime/query_exec.h"

#include <algorithm>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/sql_terms.h"

namespace flatstore::internal {

absl::StatusOr<std::vector<RawRow>> executeQueryIn(Connection& c, const TableState& t,
                                                   const QuerySpec& spec,
                                                   const PendingTable* pending);
absl::StatusOr<int64_t> executeCountIn(Connection& c, const TableState& t, const QuerySpec& spec,
                                       const PendingTable* pending);

std::string PendingTable::encodeKey(const std::vector<Value>& key) {
  // Sized first: one allocation at most, instead of one per growth step.
  size_t size = 0;
  for (const Value& v : key) {
    size += 1 + (v.kind() == Value::Kind::kText   ? sizeof(uint32_t) + v.asText().size()
                 : v.kind() == Value::Kind::kNull ? 0
                                                  : sizeof(int64_t));
  }
  std::string out;
  out.reserve(size);
  for (const Value& v : key) {
    out.push_back(static_cast<char>(v.kind()));
    switch (v.kind()) {
      case Value::Kind::kNull:
        break;
      case Value::Kind::kInteger: {
        int64_t i = v.asInteger();
        out.append(reinterpret_cast<const char*>(&i), sizeof i);
        break;
      }
      case Value::Kind::kReal: {
        double d = v.asReal();
        out.append(reinterpret_cast<const char*>(&d), sizeof d);
        break;
      }
      case Value::Kind::kText: {
        uint32_t n = static_cast<uint32_t>(v.asText().size());
        out.append(reinterpret_cast<const char*>(&n), sizeof n);
        out.append(v.asText());
        break;
      }
    }
  }
  return out;
}

namespace {

using Kind = ExprNode::Kind;

// Builds the FROM/JOIN/WHERE/ORDER BY parts of one query.
class SqlBuilder {
 public:
  explicit SqlBuilder(const TableState& t) : t_(t) {}

  bool fieldInSql(const FieldInfo& f) const { return internal::fieldInSql(t_, f); }
  bool compilable(const ExprNode& n) const { return compilableInSql(t_, n); }

  // Appends the SQL of field `f`'s value.
  void column(const FieldInfo& f, std::string* out) {
    if (f.storage == FieldStorage::kPrimaryKey) {
      absl::StrAppend(out, "t.",
                      quoteIdentifier(t_.desc.key_columns[static_cast<size_t>(f.slot)].column));
      return;
    }
    absl::StrAppend(out, indexAlias(f), ".value");
  }

  // The alias of the joined index table of indexed field `f`, joining it on first use.
  const std::string& indexAlias(const FieldInfo& f) {
    for (const auto& [slot, alias] : aliases_) {
      if (slot == f.slot) return alias;
    }
    std::string alias = absl::StrCat("j", f.slot);
    absl::StrAppend(&joins_, " JOIN ",
                    quoteIdentifier(t_.desc.indexes[static_cast<size_t>(f.slot)].table), " ", alias,
                    " ON ", alias, ".rowid = t.rowid");
    aliases_.emplace_back(f.slot, std::move(alias));
    return aliases_.back().second;
  }

  // Appends the SQL of `n` to `out` (one string for the whole query: no temporaries). Its
  // parameters are `n`'s values in the order appendBinds() gives.
  void compile(const ExprNode& n, std::string* out) {
    switch (n.kind) {
      case Kind::kTrue:
        out->append("1");
        return;
      case Kind::kCompare:
        out->append("(");
        column(*n.field, out);
        absl::StrAppend(out, sqlCompareOperator(n.op), "?)");
        return;
      case Kind::kIn: {
        // SQLite: x IN () is false and x NOT IN () true, even for a null x.
        if (n.values.empty()) {
          out->append(n.negated ? "1" : "0");
          return;
        }
        out->append("(");
        column(*n.field, out);
        out->append(n.negated ? " NOT IN (" : " IN (");
        for (size_t i = 0; i < n.values.size(); ++i) out->append(i == 0 ? "?" : ", ?");
        out->append("))");
        return;
      }
      case Kind::kIsNull:
        out->append("(");
        column(*n.field, out);
        out->append(n.negated ? " IS NOT NULL)" : " IS NULL)");
        return;
      case Kind::kAnd:
      case Kind::kOr:
        // Left before right: parameters are bound in the order their '?' appear.
        out->append("(");
        compile(*n.lhs, out);
        out->append(n.kind == Kind::kAnd ? " AND " : " OR ");
        compile(*n.rhs, out);
        out->append(")");
        return;
      case Kind::kNot:
        out->append("(NOT ");
        compile(*n.lhs, out);
        out->append(")");
        return;
    }
    out->append("1");
  }

  // The rowid to break ties of an order that starts with `f`: the joined index table's
  // own (equal to the object's), so that SQLite can follow the index on (value, rowid)
  // instead of sorting.
  void tieBreak(const FieldInfo& f, std::string* out) {
    if (f.storage == FieldStorage::kPrimaryKey) {
      out->append("t.rowid");
      return;
    }
    absl::StrAppend(out, indexAlias(f), ".rowid");
  }

  const std::string& joins() const { return joins_; }

 private:
  const TableState& t_;
  std::string joins_;
  // Few (one per indexed field the query names): a vector beats a map.
  std::vector<std::pair<int, std::string>> aliases_;
};

// Appends the values compile() makes parameters of, in the order of their '?'.
void appendBinds(const ExprNode& n, absl::InlinedVector<const Value*, 8>* out) {
  switch (n.kind) {
    case Kind::kCompare:
      out->push_back(&n.values.front());
      return;
    case Kind::kIn:
      for (const Value& v : n.values) out->push_back(&v);
      return;
    case Kind::kAnd:
    case Kind::kOr:
      appendBinds(*n.lhs, out);
      appendBinds(*n.rhs, out);
      return;
    case Kind::kNot:
      appendBinds(*n.lhs, out);
      return;
    case Kind::kTrue:
    case Kind::kIsNull:
      return;
  }
}

// The key of a query shape, built on the stack.
using ShapeKey = absl::InlinedVector<char, 96>;

template <class V>
void appendBytes(ShapeKey* key, const V& v) {
  const char* b = reinterpret_cast<const char*>(&v);
  key->insert(key->end(), b, b + sizeof v);
}

// Appends to `key` what the SQL of a field depends on: where it is stored (the key
// columns, or an index table) and which one.
void appendFieldShape(const FieldInfo& f, ShapeKey* key) {
  key->push_back(static_cast<char>('A' + static_cast<int>(f.storage)));
  appendBytes(key, f.slot);
}

// Appends to `key` what the SQL of `n` depends on: its structure, operators, fields and
// the number of values of an IN list, never the values themselves.
void appendShape(const ExprNode& n, ShapeKey* key) {
  auto field = [key](const FieldInfo* f) { appendFieldShape(*f, key); };
  key->push_back(static_cast<char>('a' + static_cast<int>(n.kind)));
  switch (n.kind) {
    case Kind::kCompare:
      key->push_back(static_cast<char>('0' + static_cast<int>(n.op)));
      field(n.field);
      return;
    case Kind::kIn: {
      key->push_back(n.negated ? '!' : '=');
      field(n.field);
      uint64_t count = n.values.size();
      appendBytes(key, count);
      return;
    }
    case Kind::kIsNull:
      key->push_back(n.negated ? '!' : '=');
      field(n.field);
      return;
    case Kind::kAnd:
    case Kind::kOr:
      appendShape(*n.lhs, key);
      appendShape(*n.rhs, key);
      return;
    case Kind::kNot:
      appendShape(*n.lhs, key);
      return;
    case Kind::kTrue:
      return;
  }
}

// One candidate row with its sort keys.
struct Candidate {
  RawRow row;
  int64_t sort_id;
  std::vector<Value> order_values;
};

// A few of each per query: kept inline, no allocation.
using Terms = absl::InlinedVector<const ExprNode*, 8>;

bool matches(const Terms& terms, const uint8_t* buffer) {
  for (const ExprNode* t : terms) {
    if (evaluate(*t, buffer) != Truth::kTrue) return false;
  }
  return true;
}

// What a query's SQL selects.
enum class Select { kRows, kCount };

// A plan: the SQL to run (its shape's), its parameters, and what is left for memory.
// Points into the spec it was made of, which must outlive it.
struct Plan {
  std::shared_ptr<const CachedPlan> shape;
  absl::InlinedVector<const Value*, 8> binds;
  Terms residual;
  // Bound after `binds` when the SQL has LIMIT and OFFSET.
  bool window = false;
  int64_t limit = -1;
  int64_t offset = 0;

  const std::string& sql() const { return shape->sql; }

  // Binds the parameters to `s`, which is reset before the spec the plan was made of
  // goes (the text of its values is not copied).
  void bindTo(Statement& s) const {
    int i = 1;
    for (const Value* v : binds) s.bindStatic(i++, *v);
    if (window) {
      s.bindInt(i++, limit);
      s.bindInt(i++, offset);
    }
  }
};

// The SQL of a query of `spec`'s shape, built anew. `terms` are spec.where's top-level
// conjuncts and `in_sql` tells which of them SQLite evaluates.
CachedPlan compileShape(const TableState& t, const QuerySpec& spec, bool has_pending, Select select,
                        const Terms& terms, const absl::InlinedVector<bool, 8>& in_sql,
                        bool order_ok) {
  CachedPlan p;
  SqlBuilder b(t);
  std::string where;
  for (size_t i = 0; i < terms.size(); ++i) {
    if (!in_sql[i]) continue;
    where.append(where.empty() ? " WHERE " : " AND ");
    b.compile(*terms[i], &where);
  }
  const bool no_residual = std::find(in_sql.begin(), in_sql.end(), false) == in_sql.end();
  p.order_in_sql = order_ok && !has_pending;
  p.limit_in_sql = p.order_in_sql && no_residual;
  std::string order;
  p.rowid_order_in_memory =
      p.order_in_sql && spec.order.empty() && !spec.limit.has_value() && spec.offset == 0;
  if (p.order_in_sql && !p.rowid_order_in_memory) {
    order.append(" ORDER BY ");
    for (const auto& [field, desc] : spec.order) {
      b.column(*field, &order);
      order.append(desc ? " DESC, " : ", ");
    }
    if (spec.order.size() == 1) {
      b.tieBreak(*spec.order.front().first, &order);
    } else {
      order.append("t.rowid");
    }
  }
  const char* columns = select == Select::kRows ? "SELECT t.rowid, t.p, t.vs" : "SELECT 1";
  p.sql = absl::StrCat(columns, " FROM ", t.quoted, " t", b.joins(), where, order);
  // Bound, not spelled out: the SQL of a query shape stays one cached statement
  // whatever page it asks for.
  if (p.limit_in_sql && (spec.limit.has_value() || spec.offset > 0)) {
    absl::StrAppend(&p.sql, " LIMIT ? OFFSET ?");
  }
  if (select == Select::kCount) p.sql = absl::StrCat("SELECT count(*) FROM (", p.sql, ")");
  return p;
}

Plan plan(const TableState& t, const QuerySpec& spec, bool has_pending, Select select) {
  Plan p;
  Terms terms;
  andTerms(spec.where.get(), &terms);
  // The shape's key: everything compileShape() reads but the values.
  absl::InlinedVector<bool, 8> in_sql(terms.size());
  ShapeKey key;
  key.push_back(select == Select::kRows ? 'r' : 'c');
  key.push_back(has_pending ? 'p' : '-');
  key.push_back(spec.limit.has_value() ? 'l' : '-');
  key.push_back(spec.offset > 0 ? 'o' : '-');
  for (size_t i = 0; i < terms.size(); ++i) {
    // Whether SQLite can evaluate a term changes when an index's back-fill completes.
    in_sql[i] = compilableInSql(t, *terms[i]);
    key.push_back(in_sql[i] ? 'S' : 'M');
    appendShape(*terms[i], &key);
  }
  bool order_ok = true;
  key.push_back('|');
  for (const auto& [field, desc] : spec.order) {
    const bool ok = fieldInSql(t, *field);
    order_ok = order_ok && ok;
    appendFieldShape(*field, &key);
    key.push_back(static_cast<char>((desc ? 2 : 0) | (ok ? 1 : 0)));
  }
  p.shape = t.plans.find(std::string_view(key.data(), key.size()));
  if (p.shape == nullptr) {
    p.shape = std::make_shared<const CachedPlan>(
        compileShape(t, spec, has_pending, select, terms, in_sql, order_ok));
    t.plans.add(std::string(key.data(), key.size()), p.shape);
  }
  for (size_t i = 0; i < terms.size(); ++i) {
    if (in_sql[i]) {
      appendBinds(*terms[i], &p.binds);
    } else {
      p.residual.push_back(terms[i]);
    }
  }
  if (p.shape->limit_in_sql && (spec.limit.has_value() || spec.offset > 0)) {
    p.window = true;
    p.limit = spec.limit.value_or(-1);
    p.offset = spec.offset;
  }
  return p;
}

absl::StatusOr<RawRow> materialize(const TableState& t, const Statement& s) {
  RawRow r;
  r.rowid = s.columnInt(0);
  FLATSTORE_ASSIGN_OR_RETURN(r.bytes, verifiedCopy(t.desc, s.columnBlob(1), r.rowid));
  r.versionstamp = Versionstamp::fromPacked(s.columnInt(2));
  return r;
}

// Names the table in error messages (built only when an error is).
std::string_view what(const TableState& t) { return t.desc.table_name; }

absl::StatusOr<std::vector<RawRow>> executeKeyLookup(Connection& c, const TableState& t,
                                                     const std::vector<Value>& key,
                                                     const PendingTable* pending) {
  std::vector<RawRow> out;
  if (pending != nullptr && !t.desc.hasAutomaticId()) {
    std::string encoded = PendingTable::encodeKey(key);
    auto it = pending->key_to_sort_id.find(encoded);
    if (it != pending->key_to_sort_id.end()) {
      const PendingTable::Entry* e = nullptr;
      auto ins = pending->inserts.find(it->second);
      if (ins != pending->inserts.end()) {
        e = &ins->second;
      } else {
        auto up = pending->by_rowid.find(it->second);
        if (up != pending->by_rowid.end()) e = &up->second;
      }
      if (e != nullptr && !e->deleted) {
        out.push_back(RawRow{e->rowid, Versionstamp(), ObjectBuffer::copyOf(e->bytes.span())});
      }
      return out;
    }
    if (pending->removed_keys.count(encoded) != 0) return out;
  }
  absl::StatusOr<std::optional<RawRow>> row =
      t.desc.hasAutomaticId() ? (key.size() == 1 && key[0].kind() == Value::Kind::kInteger
                                     ? readRowByRowid(c, t, key[0].asInteger())
                                     : absl::StatusOr<std::optional<RawRow>>(std::nullopt))
                              : readRowByKey(c, t, key);
  if (!row.ok()) return row.status();
  if (!row->has_value()) return out;
  if (pending != nullptr) {
    auto up = pending->by_rowid.find((*row)->rowid);
    if (up != pending->by_rowid.end()) {
      if (!up->second.deleted) {
        out.push_back(RawRow{up->second.rowid, Versionstamp(),
                             ObjectBuffer::copyOf(up->second.bytes.span())});
      }
      return out;
    }
  }
  out.push_back(std::move(**row));
  return out;
}

// Steps a bound lookup once: the row, if any, verified; the statement is reset.
absl::StatusOr<std::optional<RawRow>> readOneRow(const TableState& t, Statement* s) {
  absl::StatusOr<bool> row = s->step(what(t));
  std::optional<RawRow> out;
  absl::Status status = row.status();
  if (row.ok() && *row) {
    absl::StatusOr<RawRow> r = materialize(t, *s);
    if (r.ok()) {
      out = std::move(*r);
    } else {
      status = r.status();
    }
  }
  s->reset();
  if (!status.ok()) return status;
  return out;
}

}  // namespace

absl::StatusOr<std::optional<RawRow>> readRowByRowid(Connection& c, const TableState& t,
                                                     int64_t rowid) {
  FLATSTORE_ASSIGN_OR_RETURN(Statement * s, c.cached(t.select_by_rowid_sql, what(t)));
  s->bindInt(1, rowid);
  return readOneRow(t, s);
}

absl::StatusOr<std::optional<RawRow>> readRowByKey(Connection& c, const TableState& t,
                                                   const std::vector<Value>& key) {
  FLATSTORE_ASSIGN_OR_RETURN(Statement * s, c.cached(t.select_by_key_sql, what(t)));
  // `key` outlives the step and the reset of readOneRow: its text need not be copied.
  for (size_t i = 0; i < key.size() && i < t.desc.key_columns.size(); ++i) {
    s->bindStatic(static_cast<int>(i + 1), key[i]);
  }
  return readOneRow(t, s);
}

// A table created after the reader's snapshot began does not exist in that snapshot:
// there it is empty.
bool missingTable(const absl::Status& s) {
  return !s.ok() && s.message().find("no such table") != absl::string_view::npos;
}

absl::StatusOr<std::vector<RawRow>> executeQuery(Connection& c, const TableState& t,
                                                 const QuerySpec& spec,
                                                 const PendingTable* pending) {
  absl::StatusOr<std::vector<RawRow>> rows = executeQueryIn(c, t, spec, pending);
  if (missingTable(rows.status())) return std::vector<RawRow>();
  return rows;
}

absl::StatusOr<std::vector<RawRow>> executeQueryIn(Connection& c, const TableState& t,
                                                   const QuerySpec& spec,
                                                   const PendingTable* pending) {
  if (pending != nullptr && pending->empty()) pending = nullptr;
  if (spec.key.has_value()) return executeKeyLookup(c, t, *spec.key, pending);
  if (spec.rowid.has_value()) {
    FLATSTORE_ASSIGN_OR_RETURN(auto row, readRowByRowid(c, t, *spec.rowid));
    std::vector<RawRow> out;
    if (row.has_value()) out.push_back(std::move(*row));
    return out;
  }

  Plan p = plan(t, spec, pending != nullptr, Select::kRows);
  FLATSTORE_ASSIGN_OR_RETURN(Statement * stmt, c.cachedQuery(p.sql(), what(t)));
  Statement& s = *stmt;
  // Declared after `p`, so the statement is reset before the binds it points into go.
  absl::Cleanup reset = [stmt] { stmt->reset(); };
  p.bindTo(s);

  // With SQL ordering but a residual filter, rows stream in order: stop once the
  // requested window is full.
  std::optional<int64_t> stop_after;
  if (p.shape->order_in_sql && !p.shape->limit_in_sql && spec.limit.has_value()) {
    stop_after = spec.offset + *spec.limit;
  }
  std::vector<Candidate> rows;
  rows.reserve(16);  // most reads want a few rows: no growth steps for them
  // Rows are verified and filtered in one reused aligned buffer; only matches are
  // copied out.
  std::vector<uint64_t> scratch;
  while (!stop_after.has_value() || static_cast<int64_t>(rows.size()) < *stop_after) {
    FLATSTORE_ASSIGN_OR_RETURN(bool more, s.step(what(t)));
    if (!more) break;
    int64_t rowid = s.columnInt(0);
    if (pending != nullptr && pending->by_rowid.count(rowid) != 0) continue;
    std::span<const uint8_t> blob = s.columnBlob(1);
    if (!p.residual.empty()) {
      scratch.resize(blob.size() / sizeof(uint64_t) + 1);
      if (!blob.empty()) std::memcpy(scratch.data(), blob.data(), blob.size());
      std::span<const uint8_t> aligned(reinterpret_cast<const uint8_t*>(scratch.data()),
                                       blob.size());
      if (!t.desc.verify(aligned)) {
        FLATSTORE_RETURN_IF_ERROR(verifiedCopy(t.desc, blob, rowid).status());
      }
      if (!matches(p.residual, aligned.data())) continue;
      // Verified above: a match is copied out without verifying it again.
      rows.push_back(Candidate{
          RawRow{rowid, Versionstamp::fromPacked(s.columnInt(2)), ObjectBuffer::copyOf(aligned)},
          rowid,
          {}});
      continue;
    }
    FLATSTORE_ASSIGN_OR_RETURN(RawRow r, materialize(t, s));
    rows.push_back(Candidate{std::move(r), rowid, {}});
  }
  if (pending != nullptr) {
    auto add = [&](const PendingTable::Entry& e) {
      if (e.deleted) return;
      if (spec.where != nullptr && evaluate(*spec.where, e.bytes.data()) != Truth::kTrue) return;
      rows.push_back(Candidate{
          RawRow{e.rowid, Versionstamp(), ObjectBuffer::copyOf(e.bytes.span())}, e.sort_id, {}});
    };
    for (const auto& [rowid, e] : pending->by_rowid) add(e);
    for (const auto& [id, e] : pending->inserts) add(e);
  }
  if (p.shape->rowid_order_in_memory) {
    auto by_rowid = [](const Candidate& a, const Candidate& b) { return a.sort_id < b.sort_id; };
    if (!std::is_sorted(rows.begin(), rows.end(), by_rowid)) {
      std::sort(rows.begin(), rows.end(), by_rowid);
    }
  }
  if (!p.shape->order_in_sql) {
    for (Candidate& cand : rows) {
      for (const auto& o : spec.order)
        cand.order_values.push_back(o.first->read(cand.row.bytes.data()));
    }
    std::stable_sort(rows.begin(), rows.end(), [&](const Candidate& a, const Candidate& b) {
      for (size_t i = 0; i < spec.order.size(); ++i) {
        auto c = sortOrder(a.order_values[i], b.order_values[i]);
        if (c != 0) return spec.order[i].second ? c > 0 : c < 0;
      }
      return a.sort_id < b.sort_id;
    });
  }
  std::vector<RawRow> out;
  if (p.shape->limit_in_sql) {
    out.reserve(rows.size());
    for (Candidate& cand : rows) out.push_back(std::move(cand.row));
    return out;
  }
  size_t begin =
      static_cast<size_t>(std::min<int64_t>(spec.offset, static_cast<int64_t>(rows.size())));
  size_t end = rows.size();
  if (spec.limit.has_value())
    end = std::min(end, begin + static_cast<size_t>(std::max<int64_t>(0, *spec.limit)));
  out.reserve(end - begin);
  for (size_t i = begin; i < end; ++i) out.push_back(std::move(rows[i].row));
  return out;
}

absl::StatusOr<int64_t> executeCount(Connection& c, const TableState& t, const QuerySpec& spec,
                                     const PendingTable* pending) {
  absl::StatusOr<int64_t> n = executeCountIn(c, t, spec, pending);
  if (missingTable(n.status())) return 0;
  return n;
}

absl::StatusOr<int64_t> executeCountIn(Connection& c, const TableState& t, const QuerySpec& spec,
                                       const PendingTable* pending) {
  if (pending != nullptr && pending->empty()) pending = nullptr;
  if (pending == nullptr && !spec.key.has_value()) {
    QuerySpec unordered = spec;
    unordered.order.clear();
    Plan p = plan(t, unordered, false, Select::kCount);
    if (p.residual.empty()) {
      FLATSTORE_ASSIGN_OR_RETURN(Statement * s, c.cachedQuery(p.sql(), what(t)));
      absl::Cleanup reset = [s] { s->reset(); };
      p.bindTo(*s);
      FLATSTORE_ASSIGN_OR_RETURN(bool row, s->step(what(t)));
      return row ? s->columnInt(0) : 0;
    }
  }
  FLATSTORE_ASSIGN_OR_RETURN(auto rows, executeQueryIn(c, t, spec, pending));
  return static_cast<int64_t>(rows.size());
}

}  // namespace flatstore::internal
