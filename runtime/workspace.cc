// The public Workspace, and WorkspaceImpl: opening a workspace's parts, wiring them
// together and shutting them down.
#include "flatstore/workspace.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "flatstore/status.h"
#include "runtime/backup.h"
#include "runtime/change_log.h"
#include "runtime/chunked.h"
#include "runtime/dictionary.h"
#include "runtime/pg_workspace.h"
#include "runtime/workspace_impl.h"

namespace flatstore {
namespace internal {
namespace {

// The closures that may run at a time when WorkspaceOptions::worker_threads is 0. On a
// file, closures use the CPU: one per core. On a server, each of their reads waits for
// a round trip, so more run at once: four per core, at least eight.
int defaultWorkers(bool server) {
  unsigned n = std::max(2u, std::thread::hardware_concurrency());
  return static_cast<int>(server ? std::max(8u, 4 * n) : n);
}

// Clear errors for paths SQLite would only call "unable to open".
absl::Status checkPath(const std::string& path) {
  std::filesystem::path p(path);
  std::filesystem::path dir =
      p.parent_path().empty() ? std::filesystem::path(".") : p.parent_path();
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("cannot open ", path, ": directory ", dir.string(), " does not exist"));
  }
  bool exists = std::filesystem::exists(p, ec);
  if (exists && std::filesystem::is_directory(p, ec)) {
    return absl::FailedPreconditionError(absl::StrCat("cannot open ", path, ": it is a directory"));
  }
  if (exists && ::access(path.c_str(), R_OK | W_OK) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open ", path, ": the file is not readable and writable"));
  }
  // WAL mode needs the -wal and -shm files beside the database.
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("cannot open ", path, ": directory ",
                                                    dir.string(),
                                                    " is not writable (WAL mode needs it)"));
  }
  return absl::OkStatus();
}

// Whether `path` is a libpq connection URI rather than a file path.
bool isPostgresUri(std::string_view path) {
  return path.starts_with("postgresql://") || path.starts_with("postgres://");
}

// The URI as an error message may show it: the scheme, host, port and database, without
// the user part (which may hold a password) or the parameters (which may too).
std::string shownUri(std::string_view uri) {
  const size_t scheme_end = uri.find("://") + 3;
  std::string_view rest = uri.substr(scheme_end);
  rest = rest.substr(0, rest.find('?'));
  const size_t at = rest.find('@');
  if (at != std::string_view::npos) rest = rest.substr(at + 1);
  return std::string(uri.substr(0, scheme_end)) + std::string(rest);
}

}  // namespace

absl::StatusOr<std::unique_ptr<WorkspaceImpl>> WorkspaceImpl::open(
    const std::string& path, const WorkspaceOptions& options) {
  if (isPostgresUri(path)) return openPostgres(path, options);
  FLATSTORE_RETURN_IF_ERROR(checkPath(path));
  FLATSTORE_ASSIGN_OR_RETURN(auto writer_connection, Connection::open(path, /*read_only=*/false));
  writer_connection->setBusyTimeout(options.lock_timeout);
  FLATSTORE_RETURN_IF_ERROR(
      initializeDatabase(*writer_connection, options.synchronous == Synchronous::kFull));
  // Other processes' commits after this one reach subscriptions (CommitWatcher).
  uint64_t start_sequence = 0;
  FLATSTORE_RETURN_IF_ERROR(inReadTransaction(*writer_connection, [&]() -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(LogHead head, readLogHead(*writer_connection, "open"));
    start_sequence = head.sequence;
    return absl::OkStatus();
  }));
  std::unique_ptr<WorkspaceImpl> ws(new WorkspaceImpl(path, options));
  // Start with an empty WAL (a crashed predecessor may have left a long one). Readers of
  // other processes may hold it back, and a full disk keep the WAL as it is (reads work
  // on a full disk): both only count in the metrics. An I/O error leaves the file's
  // state in doubt, and the workspace is not opened on it.
  int rc = sqlite3_wal_checkpoint_v2(writer_connection->db(), nullptr, SQLITE_CHECKPOINT_TRUNCATE,
                                     nullptr, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status error =
        rc == SQLITE_BUSY || rc == SQLITE_LOCKED
            ? absl::OkStatus()
            : sqliteStatus(sqlite3_extended_errcode(writer_connection->db()),
                           writer_connection->db(), {}, absl::StrCat("checkpoint of ", path));
    if (!error.ok() && writesInDoubt(writer_connection->db())) return error;
    ws->metrics_.recordCheckpoint(/*truncating=*/true, /*ok=*/false, error);
  } else {
    ws->metrics_.recordCheckpoint(/*truncating=*/true, /*ok=*/true);
  }
  const int64_t origin =
      static_cast<int64_t>(std::random_device{}()) << 32 ^ std::random_device{}();
  FLATSTORE_ASSIGN_OR_RETURN(ws->readers_,
                             ReaderPool::open(path, options.reader_connections, &ws->metrics_,
                                              /*grows=*/false, absl::Seconds(30), origin));
  // Closures' snapshots: one connection per closure running at a time, opened as needed,
  // so that closures never hold up fetches (nor fetches closures).
  FLATSTORE_ASSIGN_OR_RETURN(
      ws->snapshots_,
      ReaderPool::open(path, 1, /*metrics=*/nullptr, /*grows=*/true, absl::Seconds(30), origin));
  ws->read_views_ = ws->readers_.get();
  ws->snapshot_views_ = ws->snapshots_.get();
  ws->startHub();
  WriterOptions wo;
  wo.max_group_transactions = std::clamp(options.max_group_transactions, 1, 65535);
  wo.max_group_bytes = options.max_group_bytes;
  wo.backfill_batch = std::max(1, options.backfill_batch);
  wo.origin = origin;
  wo.log_retention = std::max<int64_t>(1, options.change_log_retention);
  wo.checkpoint = {.checkpoint_pages = std::max(1, options.checkpoint_pages),
                   .wal_size_limit = options.wal_size_limit,
                   .checkpoint_wait = options.checkpoint_wait,
                   .lock_timeout = options.lock_timeout};
  ObserverHub* hub = ws->hub_.get();
  auto writer = std::make_unique<Writer>(
      std::move(writer_connection), wo, [hub](CommitEvent e) { hub->publish(std::move(e)); },
      &ws->metrics_);
  Writer* w = writer.get();
  ws->writer_ = std::move(writer);
  ReaderPool* readers = ws->readers_.get();
  ws->wireParts([w, readers](TableState& t) { return registerSqliteTable(*w, *readers, t); });
  auto watcher = std::make_unique<CommitWatcher>(
      path, options.watch_interval, origin, start_sequence, ws->tables_.get(), hub, &ws->metrics_);
  watcher->start();
  ws->watcher_ = std::move(watcher);
  return ws;
}

void WorkspaceImpl::startHub() {
  notifications_ = std::make_unique<NotificationThread>();
  // No subscription (and so no re-query) exists before open() returns, when reads_ is
  // made.
  hub_ = std::make_shared<ObserverHub>(
      [this](TableState* t, const QuerySpec& spec, const ObserverHub::TailQuery* tail) {
        return reads_->requery(t, spec, tail);
      },
      [this] { return committedSequence(); });
  hub_->start();
}

void WorkspaceImpl::wireParts(TableRegistry::Register register_table) {
  tables_ = std::make_unique<TableRegistry>(std::move(register_table), writer_.get());
  // A view's mark is a commit sequence on SQLite only (see PgSequence).
  reads_ = std::make_unique<Reads>(
      read_views_, tables_.get(), [this] { return committedSequence(); },
      /*marks_are_sequences=*/engine_ == nullptr);
  scheduler_ = std::make_unique<Scheduler>(
      options_.worker_threads > 0 ? options_.worker_threads : defaultWorkers(engine_ != nullptr));
  runner_ = std::make_unique<ClosureRunner>(
      tables_.get(), scheduler_.get(), writer_.get(), snapshot_views_, &metrics_,
      options_.max_pending_transactions, options_.max_conflict_retries);
  dictionary_ = std::make_unique<DictionaryStore>(writer_.get(), read_views_);
}

absl::StatusOr<std::unique_ptr<WorkspaceImpl>> WorkspaceImpl::openPostgres(
    const std::string& uri, const WorkspaceOptions& options) {
  PgEngineOptions eo;
  eo.uri = uri;
  eo.log_retention = std::max<int64_t>(1, options.change_log_retention);
  eo.reconnect_limit = options.reconnect_limit;
  // A running closure holds a snapshot's connection, and its commit a write session's.
  const int workers = options.worker_threads > 0 ? options.worker_threads : defaultWorkers(true);
  eo.max_idle_connections = std::max(1, options.reader_connections) + 2 * workers;
  absl::StatusOr<std::unique_ptr<PgEngine>> engine = PgEngine::open(eo);
  if (!engine.ok()) {
    return absl::Status(engine.status().code(), absl::StrCat("cannot open ", shownUri(uri), ": ",
                                                             engine.status().message()));
  }
  std::unique_ptr<WorkspaceImpl> ws(new WorkspaceImpl(uri, options));
  ws->engine_ = std::move(*engine);
  PgEngine* e = ws->engine_.get();
  ws->engine_views_ = std::make_unique<ClosableViews>(e);
  ws->read_views_ = ws->engine_views_.get();
  ws->snapshot_views_ = ws->engine_views_.get();
  ws->startHub();
  ObserverHub* hub = ws->hub_.get();
  ws->writer_ = std::make_unique<PgWriter>(
      e, [hub](CommitEvent ev) { hub->publish(std::move(ev)); }, &ws->metrics_,
      options.backfill_batch, &ws->pg_sequence_);
  ws->wireParts([e](TableState& t) { return e->registerTable(t); });
  auto watcher = std::make_unique<PgCommitWatcher>(e, options.watch_interval, ws->tables_.get(),
                                                   hub, &ws->metrics_, &ws->pg_sequence_);
  FLATSTORE_RETURN_IF_ERROR(watcher->start());
  ws->watcher_ = std::move(watcher);
  return ws;
}

WorkspaceImpl::~WorkspaceImpl() { shutdown().IgnoreError(); }

absl::Status WorkspaceImpl::shutdown() {
  if (Scheduler::onWorkerThread() || onWriterThread() || inSubscriptionCallback()) {
    return absl::FailedPreconditionError(
        "shutdown() inside a closure, an onComplete callback or a subscription callback "
        "would wait for itself; call it from another thread");
  }
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) {
      // Another call is shutting down: return when it is done, as it does.
      mu_.Await(absl::Condition(&shutdown_finished_));
      return shutdown_status_;
    }
    shut_down_ = true;
  }
  if (tables_ != nullptr) tables_->close();
  // Order matters: closures still queued need the writer to commit and release them.
  if (scheduler_ != nullptr) scheduler_->stop();
  absl::Status status = absl::OkStatus();
  if (writer_ != nullptr) status = writer_->stop();
  if (watcher_ != nullptr) watcher_->stop();
  // Then observers: no callback runs after the workspace is gone.
  if (hub_ != nullptr) hub_->stop();
  if (notifications_ != nullptr) notifications_->stop();
  // Last, since the parts above read while they finish: from now on every read fails
  // as fetches and commits do.
  if (readers_ != nullptr) readers_->close();
  if (engine_views_ != nullptr) engine_views_->close();
  absl::MutexLock lock(&mu_);
  shutdown_finished_ = true;
  shutdown_status_ = status;
  return status;
}

uint64_t WorkspaceImpl::committedSequence() {
  return std::max(writer_->lastCommitSequence(), watcher_->watchedSequence());
}

absl::StatusOr<std::shared_ptr<SubscriptionCore>> WorkspaceImpl::newSubscription(
    const TableDescription& d, Executor* executor) {
  FLATSTORE_ASSIGN_OR_RETURN(TableState * t, tables_->get(d));
  auto core = std::make_shared<SubscriptionCore>();
  core->table = t;
  core->executor = executor != nullptr ? executor : notifications_.get();
  core->hub = hub_;
  return core;
}

}  // namespace internal

// ---------------------------------------------------------------------------------------
// Workspace

absl::StatusOr<std::unique_ptr<Workspace>> Workspace::open(const std::string& path,
                                                           WorkspaceOptions options) {
  if (options.disable_mutex_deadlock_detection) {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  }
  FLATSTORE_ASSIGN_OR_RETURN(auto impl, internal::WorkspaceImpl::open(path, options));
  return std::unique_ptr<Workspace>(new Workspace(std::move(impl)));
}

Workspace::Workspace(std::unique_ptr<internal::WorkspaceImpl> impl) : impl_(std::move(impl)) {}
Workspace::~Workspace() = default;

TransactionHandle Workspace::performChangesErased(
    std::vector<const TableDescription*> tables,
    std::function<absl::Status(TransactionContext&)> closure, TransactionOptions options,
    bool caller_waits) {
  return impl_->runner().performChanges(std::move(tables), std::move(closure), std::move(options),
                                        /*internal_continuation=*/false, caller_waits);
}

internal::QuerySource* Workspace::querySource() { return &impl_->reads(); }

TransactionHandle Workspace::performChunkedErased(
    std::vector<const TableDescription*> tables, std::string name,
    std::function<absl::StatusOr<bool>(TransactionContext&, std::string&)> chunk,
    TransactionOptions options) {
  return internal::ChunkedJob::start(&impl_->runner(), &impl_->dictionary(), &impl_->writer(),
                                     std::move(tables), std::move(name), std::move(chunk),
                                     std::move(options));
}

absl::Status Workspace::snapshot(const std::function<absl::Status(Snapshot&)>& fn) {
  return impl_->reads().snapshot(fn);
}

Dictionary& Workspace::dictionary() { return impl_->dictionary(); }
void Workspace::awaitIndexes() { impl_->writer().awaitBackfills(); }
absl::StatusOr<Versionstamp> Workspace::latestVersionstamp() {
  return impl_->reads().latestVersionstamp();
}
absl::Status Workspace::changesSinceErased(const TableDescription& table, Versionstamp since,
                                           std::vector<internal::RawRow>* changed,
                                           std::vector<std::vector<Value>>* deleted,
                                           Versionstamp* through) {
  return impl_->reads().changesSince(table, since, changed, deleted, through);
}
void Workspace::awaitObservers() { impl_->hub().drain(); }
Metrics Workspace::metrics() const { return impl_->metrics().snapshot(); }

absl::StatusOr<SubscriptionToken> Workspace::subscribeErased(
    const TableDescription& table, const internal::QuerySpec& spec, EntityFactory factory,
    std::vector<std::shared_ptr<const EntityBase>> initial, uint64_t seen,
    std::function<void(const std::vector<std::shared_ptr<const EntityBase>>&, const Changeset&)>
        deliver,
    Executor* executor) {
  FLATSTORE_ASSIGN_OR_RETURN(auto core, impl_->newSubscription(table, executor));
  core->spec = spec;
  core->factory = factory;
  core->result_callback = std::move(deliver);
  impl_->hub().add(core, std::move(initial), seen);
  return SubscriptionToken(std::move(core));
}

absl::StatusOr<SubscriptionToken> Workspace::subscribeObjectErased(
    const TableDescription& table, std::shared_ptr<const EntityBase> object, EntityFactory factory,
    std::function<void(const std::shared_ptr<const EntityBase>&)> deliver, Executor* executor) {
  if (object == nullptr) return absl::InvalidArgumentError("subscribe: the object is null");
  if (object->rowid() == 0) {
    return absl::InvalidArgumentError("subscribe: the object was not read from the database");
  }
  FLATSTORE_ASSIGN_OR_RETURN(auto core, impl_->newSubscription(table, executor));
  core->object_mode = true;
  core->object_rowid = object->rowid();
  core->factory = factory;
  core->object_callback = std::move(deliver);
  impl_->hub().add(core, {std::move(object)}, 0);
  return SubscriptionToken(std::move(core));
}
uint64_t Workspace::lastCommitSequence() const { return impl_->writer().lastCommitSequence(); }
absl::Status Workspace::shutdown() { return impl_->shutdown(); }
const std::string& Workspace::path() const { return impl_->path(); }
absl::Status Workspace::backup(const std::string& dest) {
  if (impl_->onPostgres()) {
    return absl::UnimplementedError(
        "backup() copies a SQLite file; back up a PostgreSQL database with the server's "
        "tools (pg_dump, or a base backup)");
  }
  return internal::backupDatabase(path(), dest);
}

}  // namespace flatstore
