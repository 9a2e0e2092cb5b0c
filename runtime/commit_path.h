// CommitPath: where finished closures' CommitRequests go to be committed, as the rest of
// the runtime (ClosureRunner, the dictionary, chunked work, the workspace) sees it. One
// per workspace, one per engine:
//
//   SQLite (writer.h): one writer for the file. Requests wait in its mailbox and are
//     committed in groups under the file's one write lock; a closure may run inside the
//     write transaction (after conflicts, or on an idle writer), and may hand its tables
//     on before its commit (pipeline.h).
//   PostgreSQL (pg_workspace.h): requests wait in a queue, and the threads that
//     finished their closures commit them, each group in a write session of the storage
//     engine (storage_engine.h) holding the locks of the group's tables only, so groups
//     on disjoint tables commit in parallel, on this client and across clients. A
//     closure hands its tables on as on SQLite, and the requests that queue for a table
//     while a session holds it go into its next session together. A closure that
//     conflicted runs again on a fresh snapshot, or inside the session once it handed
//     its tables on, and after two conflicts inside the write session, under its
//     tables' locks, as on SQLite.
//
// Thread-safety: all methods are thread-safe.
#ifndef FLATSTORE_RUNTIME_COMMIT_PATH_H_
#define FLATSTORE_RUNTIME_COMMIT_PATH_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "flatstore/dictionary.h"
#include "runtime/catalog.h"
#include "runtime/commit_request.h"

namespace flatstore::internal {

class CommitPath {
 public:
  virtual ~CommitPath() = default;

  // Queues `request`; its completion runs later. After stop(), completes it at once with
  // FailedPrecondition.
  virtual void submit(std::unique_ptr<CommitRequest> request) = 0;
  // Commits `request` on the calling thread when it may, completing it before returning;
  // otherwise as submit().
  virtual void submitOrCommit(std::unique_ptr<CommitRequest> request) = 0;
  // Commits `request` alone on the calling thread, running its closure inside the write
  // transaction (request.run_under_lock), if the path is idle; otherwise hands the
  // request back untouched. A path that never runs closures inside its transactions
  // always hands it back.
  virtual std::unique_ptr<CommitRequest> commitIfIdle(std::unique_ptr<CommitRequest> request) = 0;
  // Commits what is queued on the calling thread when it may.
  virtual void commitQueued() = 0;
  // Whether a request submitted now would wait. A hint.
  virtual bool busy() const = 0;
  // Whether a request may ask for its closure to run inside the write transaction
  // (request.run_under_lock): after conflicts, where it cannot conflict.
  virtual bool runsClosures() const = 0;
  // Whether a request may wait for its commit after its closure handed its tables on
  // (pipeline.h): requests queue, and a conflict is settled by running the closure
  // inside the write transaction.
  virtual bool handsOn() const = 0;
  // Whether a thread of the path's own commits what submit() queued (SQLite's writer
  // thread). Without one (PostgreSQL), the thread that handed a closure's tables on
  // commits its request with commitQueued(), and the next closure runs on another
  // thread meanwhile.
  virtual bool commitsInBackground() const = 0;
  // Whether a closure's creations may take their primary keys as free without looking
  // them up (request.keys_unchecked): the path's apply refuses a taken key, and then
  // runs the closure again inside the write transaction with every key looked up, in
  // the request's place, so that the closure sees the AlreadyExists it would have seen.
  virtual bool refusesTakenKeys() const { return false; }

  // The dictionary, written in a transaction of its own (or, on SQLite, inside the
  // write transaction of the closure that calls it there).
  virtual absl::Status putEntry(std::string_view key, Dictionary::Kind kind, std::string_view type,
                                std::span<const uint8_t> value) = 0;
  virtual absl::Status eraseEntry(std::string_view key) = 0;

  // Registers a table whose incomplete indexes are back-filled in the background.
  virtual void addBackfill(TableState* table) = 0;
  // Blocks until no registered back-fill remains or the path stops.
  virtual void awaitBackfills() = 0;
  // Commits everything submitted, then stops. Idempotent: later calls return the same
  // status.
  virtual absl::Status stop() = 0;
  // OK while commits are taken; otherwise the error every commit fails with.
  virtual absl::Status stoppedError() const = 0;
  // The commit sequence of the last commit this path made.
  virtual uint64_t lastCommitSequence() const = 0;
  // Write-lock time per change of recent large requests (sizes chunks).
  virtual int64_t nanosPerChange() const = 0;
};

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_COMMIT_PATH_H_
