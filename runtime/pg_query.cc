#include "runtime/pg_query.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "runtime/absl_compat.h"
#include "runtime/sql_terms.h"

namespace flatstore::internal {
namespace {

using Kind = ExprNode::Kind;

bool isText(ColumnType t) { return t == ColumnType::kText; }

// Whether a non-null column of type `column` is above, below or equal to `v`'s class,
// for values that PostgreSQL cannot compare: +1 when every column value sorts after
// `v` (a text column against a number), -1 when before, 0 when they compare as
// values.
int classOrder(ColumnType column, const Value& v) {
  const bool text_value = v.kind() == Value::Kind::kText;
  if (isText(column) == text_value) return 0;
  return isText(column) ? 1 : -1;
}

// SQL for a truth constant that is unknown when `column` is null.
std::string constantUnlessNull(const std::string& column, bool truth) {
  return truth ? absl::StrCat("(", column, " IS NOT NULL OR NULL)")
               : absl::StrCat("(", column, " IS NULL AND NULL)");
}

bool holds(CompareOp op, int order) {
  switch (op) {
    case CompareOp::kEq:
      return order == 0;
    case CompareOp::kNe:
      return order != 0;
    case CompareOp::kLt:
      return order < 0;
    case CompareOp::kLe:
      return order <= 0;
    case CompareOp::kGt:
      return order > 0;
    case CompareOp::kGe:
      return order >= 0;
  }
  return false;
}

// Compiles predicate terms into PostgreSQL's dialect, collecting their parameters.
class PgExprCompiler {
 public:
  PgExprCompiler(const TableState& t, const PgTableSql& sql) : t_(t), sql_(sql) {}

  bool inSql(const FieldInfo& f) const { return fieldInSql(t_, f); }
  bool compilable(const ExprNode& n) const { return compilableInSql(t_, n); }

  std::string column(const FieldInfo& f) const {
    const auto slot = static_cast<size_t>(f.slot);
    if (f.storage == FieldStorage::kPrimaryKey) {
      return "t." + pgQuote(t_.desc.key_columns[slot].column);
    }
    return "t." + sql_.index_columns[slot];
  }

  ColumnType type(const FieldInfo& f) const {
    const auto slot = static_cast<size_t>(f.slot);
    if (f.storage == FieldStorage::kPrimaryKey) return t_.desc.key_columns[slot].type;
    return t_.desc.indexes[slot].type;
  }

  // A parameter for `v` compared with a column of type `column`: numbers compared with
  // a real column go as reals, so that PostgreSQL uses the column's own operator.
  std::string bind(const Value& v, ColumnType column) {
    if (column == ColumnType::kReal && v.kind() == Value::Kind::kInteger) {
      binds_.push_back(Value::real(static_cast<double>(v.asInteger())));
    } else {
      binds_.push_back(v);
    }
    return absl::StrCat("$", binds_.size());
  }

  std::string compile(const ExprNode& n) {
    switch (n.kind) {
      case Kind::kTrue:
        return "true";
      case Kind::kCompare: {
        const Value& v = n.values.front();
        if (v.isNull()) return "(NULL::boolean)";
        std::string col = column(*n.field);
        ColumnType ct = type(*n.field);
        if (int order = classOrder(ct, v); order != 0) {
          return constantUnlessNull(col, holds(n.op, order));
        }
        return absl::StrCat("(", col, sqlCompareOperator(n.op), bind(v, ct), ")");
      }
      case Kind::kIn: {
        std::string col = column(*n.field);
        if (n.values.empty()) return n.negated ? "true" : "false";
        ColumnType ct = type(*n.field);
        // Values of the other class equal nothing: they drop out of the list, which
        // then holds only what can match (and nulls, which make a miss unknown).
        std::string list;
        for (const Value& v : n.values) {
          if (!v.isNull() && classOrder(ct, v) != 0) continue;
          absl::StrAppend(&list, list.empty() ? "" : ", ", v.isNull() ? "NULL" : bind(v, ct));
        }
        if (list.empty()) return constantUnlessNull(col, n.negated);
        return absl::StrCat("(", col, n.negated ? " NOT IN (" : " IN (", list, "))");
      }
      case Kind::kIsNull:
        return absl::StrCat("(", column(*n.field), n.negated ? " IS NOT NULL)" : " IS NULL)");
      case Kind::kAnd:
      case Kind::kOr: {
        std::string lhs = compile(*n.lhs);
        std::string rhs = compile(*n.rhs);
        return absl::StrCat("(", lhs, n.kind == Kind::kAnd ? " AND " : " OR ", rhs, ")");
      }
      case Kind::kNot:
        return absl::StrCat("(NOT ", compile(*n.lhs), ")");
    }
    return "true";
  }

  std::vector<Value>& binds() { return binds_; }

 private:
  const TableState& t_;
  const PgTableSql& sql_;
  std::vector<Value> binds_;
};

std::string_view what(const TableState& t) { return t.desc.table_name; }

absl::StatusOr<PgResult> run(PgConnection& c, const TableState& t, const std::string& sql,
                             const std::vector<Value>& binds) {
  std::vector<PgParam> params;
  params.reserve(binds.size());
  for (const Value& v : binds) params.push_back(pgParam(v));
  return c.query(sql, params, what(t));
}

absl::StatusOr<RawRow> rowAt(const TableState& t, const PgResult& r, int row) {
  RawRow out;
  FLATSTORE_ASSIGN_OR_RETURN(out.rowid, r.getInt64(row, 0));
  FLATSTORE_ASSIGN_OR_RETURN(std::span<const uint8_t> p, r.getBytes(row, 1));
  FLATSTORE_ASSIGN_OR_RETURN(out.bytes, verifiedCopy(t.desc, p, out.rowid));
  FLATSTORE_ASSIGN_OR_RETURN(int64_t vs, r.getInt64(row, 2));
  out.versionstamp = Versionstamp::fromPacked(vs);
  return out;
}

absl::StatusOr<std::optional<RawRow>> firstRow(const TableState& t, const PgResult& r) {
  if (r.rows() == 0) return std::nullopt;
  FLATSTORE_ASSIGN_OR_RETURN(RawRow row, rowAt(t, r, 0));
  return row;
}

RawRow pendingRow(const PendingTable::Entry& e) {
  return RawRow{e.rowid, Versionstamp(), ObjectBuffer::copyOf(e.bytes.span())};
}

// A lookup by key or automatic id, through the closure's pending changes first.
absl::StatusOr<std::vector<RawRow>> keyLookup(PgConnection& c, const TableState& t,
                                              const PgTableSql& sql, const std::vector<Value>& key,
                                              const PendingTable* pending) {
  std::vector<RawRow> out;
  if (pending != nullptr && !t.desc.hasAutomaticId()) {
    const std::string encoded = PendingTable::encodeKey(key);
    if (auto it = pending->key_to_sort_id.find(encoded); it != pending->key_to_sort_id.end()) {
      const PendingTable::Entry* e = nullptr;
      if (auto ins = pending->inserts.find(it->second); ins != pending->inserts.end()) {
        e = &ins->second;
      } else if (auto up = pending->by_rowid.find(it->second); up != pending->by_rowid.end()) {
        e = &up->second;
      }
      if (e != nullptr && !e->deleted) out.push_back(pendingRow(*e));
      return out;
    }
    if (pending->removed_keys.contains(encoded)) return out;
  }
  std::optional<RawRow> row;
  if (!t.desc.hasAutomaticId()) {
    FLATSTORE_ASSIGN_OR_RETURN(row, pgReadRowByKey(c, t, sql, key));
  } else if (key.size() == 1 && key[0].kind() == Value::Kind::kInteger) {
    FLATSTORE_ASSIGN_OR_RETURN(row, pgReadRowByRowid(c, t, sql, key[0].asInteger()));
  }
  if (!row.has_value()) return out;
  if (pending != nullptr) {
    if (auto up = pending->by_rowid.find(row->rowid); up != pending->by_rowid.end()) {
      if (!up->second.deleted) out.push_back(pendingRow(up->second));
      return out;
    }
  }
  out.push_back(std::move(*row));
  return out;
}

struct Sortable {
  RawRow row;
  int64_t sort_id;
  std::vector<Value> keys;
};

}  // namespace

PgPlan pgPlan(const TableState& t, const PgTableSql& sql, const QuerySpec& spec, bool has_pending,
              std::string_view select) {
  PgPlan p;
  PgExprCompiler b(t, sql);
  std::vector<const ExprNode*> terms;
  andTerms(spec.where.get(), &terms);
  std::string where;
  for (const ExprNode* term : terms) {
    if (!b.compilable(*term)) {
      p.residual.push_back(term);
      continue;
    }
    absl::StrAppend(&where, where.empty() ? " WHERE " : " AND ", b.compile(*term));
  }
  p.order_in_sql = !has_pending && std::all_of(spec.order.begin(), spec.order.end(),
                                               [&](const auto& o) { return b.inSql(*o.first); });
  p.limit_in_sql = p.order_in_sql && p.residual.empty();
  p.sql = absl::StrCat("SELECT ", av(select), " FROM ", sql.table, " t", where);
  if (p.order_in_sql) {
    absl::StrAppend(&p.sql, " ORDER BY ");
    for (const auto& [field, desc] : spec.order) {
      absl::StrAppend(&p.sql, b.column(*field), desc ? " DESC NULLS LAST, " : " ASC NULLS FIRST, ");
    }
    absl::StrAppend(&p.sql, "t.rowid");
    if (p.limit_in_sql && spec.limit.has_value()) {
      absl::StrAppend(&p.sql, " LIMIT ", std::max<int64_t>(0, *spec.limit));
    }
    if (p.limit_in_sql && spec.offset > 0) absl::StrAppend(&p.sql, " OFFSET ", spec.offset);
  }
  p.binds = std::move(b.binds());
  return p;
}

absl::StatusOr<std::optional<RawRow>> pgReadRowByRowid(PgConnection& c, const TableState& t,
                                                       const PgTableSql& sql, int64_t rowid) {
  FLATSTORE_ASSIGN_OR_RETURN(PgResult r,
                             c.query(sql.select_by_rowid, {PgParam::int64(rowid)}, what(t)));
  return firstRow(t, r);
}

absl::StatusOr<std::optional<RawRow>> pgReadRowByKey(PgConnection& c, const TableState& t,
                                                     const PgTableSql& sql,
                                                     const std::vector<Value>& key) {
  if (key.size() != t.desc.key_columns.size()) return std::nullopt;
  FLATSTORE_ASSIGN_OR_RETURN(PgResult r, run(c, t, sql.select_by_key, key));
  return firstRow(t, r);
}

absl::StatusOr<std::vector<RawRow>> pgExecuteQuery(PgConnection& c, const TableState& t,
                                                   const PgTableSql& sql, const QuerySpec& spec,
                                                   const PendingTable* pending) {
  if (pending != nullptr && pending->empty()) pending = nullptr;
  if (spec.key.has_value()) return keyLookup(c, t, sql, *spec.key, pending);
  if (spec.rowid.has_value()) {
    FLATSTORE_ASSIGN_OR_RETURN(std::optional<RawRow> row, pgReadRowByRowid(c, t, sql, *spec.rowid));
    std::vector<RawRow> out;
    if (row.has_value()) out.push_back(std::move(*row));
    return out;
  }
  PgPlan p = pgPlan(t, sql, spec, pending != nullptr, "t.rowid, t.p, t.vs");
  FLATSTORE_ASSIGN_OR_RETURN(PgResult r, run(c, t, p.sql, p.binds));
  std::vector<Sortable> rows;
  rows.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    FLATSTORE_ASSIGN_OR_RETURN(RawRow row, rowAt(t, r, i));
    if (pending != nullptr && pending->by_rowid.contains(row.rowid)) continue;
    bool keep = std::all_of(p.residual.begin(), p.residual.end(), [&](const auto& term) {
      return evaluate(*term, row.bytes.data()) == Truth::kTrue;
    });
    if (!keep) continue;
    const int64_t id = row.rowid;
    rows.push_back(Sortable{std::move(row), id, {}});
  }
  if (pending != nullptr) {
    auto add = [&](const PendingTable::Entry& e) {
      if (e.deleted) return;
      if (spec.where != nullptr && evaluate(*spec.where, e.bytes.data()) != Truth::kTrue) return;
      rows.push_back(Sortable{pendingRow(e), e.sort_id, {}});
    };
    for (const auto& entry : pending->by_rowid) add(entry.second);
    for (const auto& entry : pending->inserts) add(entry.second);
  }
  if (!p.order_in_sql) {
    for (Sortable& s : rows) {
      for (const auto& o : spec.order) s.keys.push_back(o.first->read(s.row.bytes.data()));
    }
    std::stable_sort(rows.begin(), rows.end(), [&](const Sortable& a, const Sortable& b) {
      for (size_t i = 0; i < spec.order.size(); ++i) {
        auto c = sortOrder(a.keys[i], b.keys[i]);
        if (c != 0) return spec.order[i].second ? c > 0 : c < 0;
      }
      return a.sort_id < b.sort_id;
    });
  }
  size_t begin = 0;
  size_t end = rows.size();
  if (!p.limit_in_sql) {
    begin = static_cast<size_t>(std::clamp<int64_t>(spec.offset, 0, static_cast<int64_t>(end)));
    if (spec.limit.has_value()) {
      end = std::min(end, begin + static_cast<size_t>(std::max<int64_t>(0, *spec.limit)));
    }
  }
  std::vector<RawRow> out;
  out.reserve(end - begin);
  for (size_t i = begin; i < end; ++i) out.push_back(std::move(rows[i].row));
  return out;
}

absl::StatusOr<int64_t> pgExecuteCount(PgConnection& c, const TableState& t, const PgTableSql& sql,
                                       const QuerySpec& spec, const PendingTable* pending) {
  if (pending != nullptr && pending->empty()) pending = nullptr;
  if (pending == nullptr && !spec.key.has_value() && !spec.rowid.has_value()) {
    QuerySpec unordered = spec;
    unordered.order.clear();
    unordered.limit.reset();
    unordered.offset = 0;
    PgPlan p = pgPlan(t, sql, unordered, false, "1");
    if (p.residual.empty()) {
      // The plan of an unordered spec has no ORDER BY: only the window is counted here.
      FLATSTORE_ASSIGN_OR_RETURN(
          PgResult r, run(c, t, absl::StrCat("SELECT count(*) FROM (", p.sql, ") q"), p.binds));
      FLATSTORE_ASSIGN_OR_RETURN(int64_t n, r.getInt64(0, 0));
      n = std::max<int64_t>(0, n - spec.offset);
      if (spec.limit.has_value()) n = std::min(n, std::max<int64_t>(0, *spec.limit));
      return n;
    }
  }
  FLATSTORE_ASSIGN_OR_RETURN(std::vector<RawRow> rows, pgExecuteQuery(c, t, sql, spec, pending));
  return static_cast<int64_t>(rows.size());
}

}  // namespace flatstore::internal
