#include "runtime/pg_pipeline.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace flatstore::internal {

void PgPipeline::add(std::string sql, std::vector<PgParam> params, std::string what) {
  statements_.push_back(Statement{std::move(sql), std::move(params), std::move(what)});
}

PgPipeline::Outcome PgPipeline::run() {
  Outcome out;
  if (absl::Status settled = conn_.settle(); !settled.ok()) {
    out.status = settled;
    out.failed = 0;
    statements_.clear();
    return out;
  }
  // The statements queued on the connection go first (PgConnection::queue).
  const size_t queued = conn_.queued_.size();
  if (queued > 0) {
    std::vector<Statement> all;
    all.reserve(queued + statements_.size());
    for (PgConnection::Queued& q : conn_.queued_) {
      all.push_back(Statement{std::move(q.sql), std::move(q.params), std::move(q.what)});
    }
    conn_.queued_.clear();
    std::move(statements_.begin(), statements_.end(), std::back_inserter(all));
    statements_ = std::move(all);
  }
  out.results.reserve(statements_.size());
  for (size_t begin = 0; begin < statements_.size(); begin += kSegment) {
    if (!runSegment(begin, std::min(statements_.size(), begin + kSegment), &out)) break;
  }
  statements_.clear();
  if (queued > 0) {
    // Their results go to the connection; a failure among them counts as the first
    // statement's of this batch (none of which ran).
    const size_t ran = std::min(queued, out.results.size());
    conn_.queued_results_.assign(std::make_move_iterator(out.results.begin()),
                                 std::make_move_iterator(out.results.begin() + ran));
    out.results.erase(out.results.begin(), out.results.begin() + ran);
    if (out.failed >= 0) out.failed = std::max(0, out.failed - static_cast<int>(queued));
  }
  return out;
}

bool PgPipeline::runSegment(size_t begin, size_t end, Outcome* out) {
  PGconn* c = conn_.get();
  auto fail = [&](size_t i, const PGresult* r) {
    const Statement& s = statements_[i];
    out->status = pgStatus(r, c, s.sql, s.what);
    out->failed = static_cast<int>(i);
    const char* constraint =
        r != nullptr ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME) : nullptr;
    if (constraint != nullptr) out->constraint = constraint;
  };
  if (PQenterPipelineMode(c) != 1) {
    fail(begin, nullptr);
    return false;
  }
  size_t sent = begin;
  std::vector<Oid> types;
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
  // Per statement sent: the name of the prepared statement it creates first, if any.
  std::vector<std::string> preparing(end - begin);
  absl::flat_hash_map<std::string, std::string> pending;  // key -> name, of those
  for (; sent < end; ++sent) {
    const Statement& s = statements_[sent];
    types.clear();
    values.clear();
    lengths.clear();
    formats.clear();
    for (const PgParam& p : s.params) {
      types.push_back(p.type());
      values.push_back(p.data());
      lengths.push_back(p.length());
      formats.push_back(p.format());
    }
    const int n = static_cast<int>(s.params.size());
    // Each statement runs as a prepared statement of the connection's, prepared in this
    // round trip the first time: the server then parses it once per connection rather
    // than at every run. Keyed by the parameters' types as well, since a statement
    // prepared for one type would read another's binary value as its own.
    std::string key;
    key.reserve(s.sql.size() + types.size() * sizeof(Oid));
    key.append(s.sql);
    key.append(reinterpret_cast<const char*>(types.data()), types.size() * sizeof(Oid));
    const std::string* name = conn_.preparedName(key);
    if (name == nullptr) {
      // Prepared by an earlier statement of this segment.
      auto it = pending.find(key);
      if (it != pending.end()) name = &it->second;
    }
    bool ok;
    if (name != nullptr) {
      ok = PQsendQueryPrepared(c, name->c_str(), n, values.data(), lengths.data(), formats.data(),
                               /*resultFormat=*/1) == 1;
    } else if (conn_.mayPrepare(pending.size())) {
      std::string fresh = conn_.nextPreparedName();
      ok = PQsendPrepare(c, fresh.c_str(), s.sql.c_str(), n, types.data()) == 1 &&
           PQsendQueryPrepared(c, fresh.c_str(), n, values.data(), lengths.data(), formats.data(),
                               /*resultFormat=*/1) == 1;
      preparing[sent - begin] = fresh;
      pending.emplace(key, std::move(fresh));
      prepared_keys_.push_back(std::move(key));
    } else {
      ok = PQsendQueryParams(c, s.sql.c_str(), n, types.data(), values.data(), lengths.data(),
                             formats.data(), /*resultFormat=*/1) == 1;
    }
    if (!ok) break;
  }
  const bool synced = PQpipelineSync(c) == 1;
  PgConnection::countRoundTrip();
  bool failed = false;
  size_t key_index = 0;
  for (size_t i = begin; i < sent; ++i) {
    if (!preparing[i - begin].empty()) {
      // The prepare's own result: the statement is the connection's only once it came
      // back (a prepare skipped after an earlier failure created nothing).
      std::string& key = prepared_keys_[key_index++];
      PGresult* r = PQgetResult(c);
      if (r != nullptr) {
        bool prepared = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (prepared) conn_.addPrepared(std::move(key), std::move(preparing[i - begin]));
        if (!prepared && !failed) {
          fail(i, r);
          failed = true;
        }
        PQclear(r);
        while ((r = PQgetResult(c)) != nullptr) PQclear(r);
      }
    }
    PGresult* r = PQgetResult(c);
    if (r == nullptr) {  // the connection is gone
      if (!failed) fail(i, nullptr);
      failed = true;
      break;
    }
    ExecStatusType st = PQresultStatus(r);
    if (!failed && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)) {
      out->results.emplace_back(r);
    } else {
      if (!failed) fail(i, r);
      failed = true;
      PQclear(r);
    }
    // Each statement's results end with a null.
    while ((r = PQgetResult(c)) != nullptr) PQclear(r);
  }
  prepared_keys_.clear();
  if (!failed && sent < end) {
    fail(sent, nullptr);
    failed = true;
  }
  if (synced) {
    // The sync's own result; on a lost connection there is none.
    if (PGresult* r = PQgetResult(c); r != nullptr) PQclear(r);
  }
  PQexitPipelineMode(c);
  return !failed;
}

}  // namespace flatstore::internal
