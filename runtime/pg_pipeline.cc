#include "runtime/pg_pipeline.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace flatstore::internal {

void PgPipeline::add(std::string sql, std::vector<PgParam> params, std::string what) {
  statements_.push_back(Statement{std::move(sql), std::move(params), std::move(what)});
}

PgPipeline::Outcome PgPipeline::run() {
  Outcome out;
  out.results.reserve(statements_.size());
  for (size_t begin = 0; begin < statements_.size(); begin += kSegment) {
    if (!runSegment(begin, std::min(statements_.size(), begin + kSegment), &out)) break;
  }
  statements_.clear();
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
    if (PQsendQueryParams(c, s.sql.c_str(), static_cast<int>(s.params.size()), types.data(),
                          values.data(), lengths.data(), formats.data(), /*resultFormat=*/1) != 1) {
      break;
    }
  }
  const bool synced = PQpipelineSync(c) == 1;
  bool failed = false;
  for (size_t i = begin; i < sent; ++i) {
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
