// PgPipeline: several statements sent to PostgreSQL in one round trip, with libpq's
// pipeline mode. The write path sends each closure's statements this way: a closure
// that writes ten objects costs one round trip, not ten.
//
// The statements run in order. The first that fails ends the batch: PostgreSQL skips
// the rest up to the sync, and run() reports which one failed, its status (mapped as
// postgres.h maps every error) and the name of the constraint it violated, if any.
// Inside a transaction a failure leaves the transaction aborted; the caller rolls back
// to a savepoint it set before.
//
// Each statement runs as a prepared statement of the connection's (prepared in the
// same round trip the first time it is sent on the connection), so the server parses it
// once per connection, not at every run.
//
// Statements queued on the connection (PgConnection::queue) go out first, in the same
// round trip; their results go back to the connection.
//
// Long batches are sent in segments of kSegment statements, each ended by a sync, so
// that neither side's socket buffer fills while the other waits (libpq's blocking mode
// would otherwise stall on a very large batch).
//
// Thread-safety: used on the connection's thread, like the connection.
#ifndef FLATSTORE_RUNTIME_PG_PIPELINE_H_
#define FLATSTORE_RUNTIME_PG_PIPELINE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "runtime/postgres.h"

namespace flatstore::internal {

class PgPipeline {
 public:
  static constexpr size_t kSegment = 256;

  explicit PgPipeline(PgConnection& conn) : conn_(conn) {}

  // Queues one statement. Parameters are kept until run(); bytes they borrow must
  // outlive it. `what` names the table or purpose in error messages.
  void add(std::string sql, std::vector<PgParam> params, std::string what = {});
  size_t size() const { return statements_.size(); }

  struct Outcome {
    absl::Status status;            // OK, or the first failure
    int failed = -1;                // the failed statement's index
    std::string constraint;         // the constraint it violated, if any
    std::vector<PgResult> results;  // of the statements before the failure (all on OK)
  };
  // Runs the queued statements and forgets them.
  Outcome run();

 private:
  struct Statement {
    std::string sql;
    std::vector<PgParam> params;
    std::string what;
  };
  // Sends statements [begin, end) and a sync, and reads their results into `out`.
  bool runSegment(size_t begin, size_t end, Outcome* out);

  PgConnection& conn_;
  std::vector<Statement> statements_;
  std::vector<std::string> prepared_keys_;  // of the statements a segment prepares
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_PG_PIPELINE_H_
