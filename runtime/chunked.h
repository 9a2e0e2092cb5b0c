// ChunkedJob: a large piece of work (Workspace::performChunked) committed as a chain of
// transactions, one chunk each, so that other transactions get the write lock between
// chunks.
//
// Each chunk is a closure that calls the user's chunk function with the cursor the
// previous chunk left; the cursor is saved in the dictionary inside the chunk's own
// commit (its commit hook), so an interrupted job resumes after its last committed chunk
// and never applies a chunk twice. A chunk ends when the user's function says so or when
// TransactionContext::chunkFull() tells it that its changes would hold the write lock
// for about TransactionOptions::chunk_budget at the writer's recent pace. The next chunk
// is submitted from the previous one's completion.
//
// Thread-safety: start() from any thread; then one chunk runs at a time, each starting
// after the previous one completed, so the job's state needs no lock.
#ifndef FLATSTORE_RUNTIME_CHUNKED_H_
#define FLATSTORE_RUNTIME_CHUNKED_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flatstore/dictionary.h"
#include "flatstore/transaction.h"
#include "runtime/closure_runner.h"
#include "runtime/writer.h"

namespace flatstore::internal {

class ChunkedJob : public std::enable_shared_from_this<ChunkedJob> {
 public:
  using ChunkFn = std::function<absl::StatusOr<bool>(TransactionContext&, std::string&)>;

  // Starts the job `name` on `tables`, from the cursor its last committed chunk saved.
  // The handle completes after the last chunk, with the chunks' results added up, or
  // with the first chunk's error.
  static TransactionHandle start(ClosureRunner* runner, Dictionary* dictionary,
                                 const CommitPath* writer,
                                 std::vector<const TableDescription*> tables, std::string name,
                                 ChunkFn chunk, TransactionOptions options);

  ChunkedJob(ClosureRunner* runner, const CommitPath* writer,
             std::vector<const TableDescription*> tables, std::string name, ChunkFn chunk,
             TransactionOptions options);

 private:
  // Submits the next chunk.
  void submitChunk();
  // The chunk's closure.
  absl::Status runChunk(TransactionContext& txn);
  void chunkDone(const absl::StatusOr<TransactionResult>& result);

  ClosureRunner* const runner_;
  const CommitPath* const writer_;
  const std::vector<const TableDescription*> tables_;
  const std::string key_;  // the cursor's dictionary key
  const ChunkFn chunk_;
  const TransactionOptions options_;
  const std::shared_ptr<HandleState> done_ = std::make_shared<HandleState>();
  TransactionResult total_;
  std::string cursor_;       // after the last committed chunk
  std::string next_cursor_;  // after the running chunk, once its function returned
  bool more_ = false;
  bool started_ = false;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_CHUNKED_H_
