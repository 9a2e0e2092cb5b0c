#include "runtime/chunked.h"

#include <algorithm>

#include "absl/time/time.h"
#include "flatstore/status.h"
#include "runtime/dictionary.h"
#include "runtime/transaction_state.h"

namespace flatstore::internal {

ChunkedJob::ChunkedJob(ClosureRunner* runner, const CommitPath* writer,
                       std::vector<const TableDescription*> tables, std::string name, ChunkFn chunk,
                       TransactionOptions options)
    : runner_(runner),
      writer_(writer),
      tables_(std::move(tables)),
      key_("flatstore.chunked." + name),
      chunk_(std::move(chunk)),
      options_([&] {
        if (options.name.empty()) options.name = name;
        return std::move(options);
      }()) {}

TransactionHandle ChunkedJob::start(ClosureRunner* runner, Dictionary* dictionary,
                                    const CommitPath* writer,
                                    std::vector<const TableDescription*> tables, std::string name,
                                    ChunkFn chunk, TransactionOptions options) {
  auto job = std::make_shared<ChunkedJob>(runner, writer, std::move(tables), std::move(name),
                                          std::move(chunk), std::move(options));
  absl::StatusOr<std::optional<std::string>> saved = dictionary->getString(job->key_);
  if (!saved.ok()) {
    job->done_->complete(saved.status());
    return TransactionHandle(job->done_);
  }
  if (saved->has_value()) job->cursor_ = **saved;
  job->submitChunk();
  return TransactionHandle(job->done_);
}

void ChunkedJob::submitChunk() {
  std::shared_ptr<ChunkedJob> self = shared_from_this();
  TransactionHandle h = runner_->performChanges(
      tables_, [self](TransactionContext& txn) { return self->runChunk(txn); }, options_,
      /*internal_continuation=*/started_);
  started_ = true;
  h.onComplete([self](const absl::StatusOr<TransactionResult>& r) { self->chunkDone(r); });
}

absl::Status ChunkedJob::runChunk(TransactionContext& txn) {
  next_cursor_ = cursor_;
  TransactionState* state = TransactionAccess::state(txn);
  // How many changes fill the chunk's budget of write-lock time at the writer's recent
  // pace (at least one).
  int64_t budget = absl::ToInt64Nanoseconds(options_.chunk_budget);
  state->setChunkLimit(std::max<int64_t>(1, budget / writer_->nanosPerChange()),
                       &runner_->pending());
  FLATSTORE_ASSIGN_OR_RETURN(more_, chunk_(txn, next_cursor_));
  // The cursor is saved with the chunk's changes, or removed with the last chunk's.
  state->setCommitHook([key = key_, cursor = next_cursor_, more = more_](EntryWriter& w) {
    if (!more) return w.eraseEntry(key);
    return w.putEntry(key, Dictionary::Kind::kString, "",
                      {reinterpret_cast<const uint8_t*>(cursor.data()), cursor.size()});
  });
  return absl::OkStatus();
}

void ChunkedJob::chunkDone(const absl::StatusOr<TransactionResult>& r) {
  if (!r.ok()) {
    done_->complete(r.status());
    return;
  }
  total_.inserted += r->inserted;
  total_.updated += r->updated;
  total_.deleted += r->deleted;
  if (r->versionstamp != Versionstamp()) total_.versionstamp = r->versionstamp;
  cursor_ = next_cursor_;
  if (more_) {
    submitChunk();
  } else {
    done_->complete(total_);
  }
}

}  // namespace flatstore::internal
