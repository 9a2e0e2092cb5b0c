// The PostgreSQL peers of the contention benchmarks, behind peers.h's Store, through the
// libpq wrapper of runtime/postgres.h:
//
//   pg-global-lock  the design of apps that serialize their writers in the database: a
//                   connection per thread, and every write transaction first locks one
//                   singleton row (SELECT ... FOR UPDATE), so writers of disjoint tables
//                   wait for each other as they would behind SQLite's write lock.
//   pg-naive        a connection per thread and plain transactions (BEGIN, INSERTs,
//                   COMMIT) with no lock of the application's.
//   pg-table-lock   pg-naive with the order flatstore keeps: every write transaction
//                   first locks its table's row in a table of locks (SELECT ... FOR
//                   UPDATE), so writers of one table are serial and of disjoint tables
//                   parallel, by hand.
//   flatstore-pg    the workspace on the server (Workspace::open with its URI): closures,
//                   per-table queues and the commit path of pg_workspace.h, the requests
//                   that queue for a table committing together in its next session.
//   pg-engine       flatstore's PostgreSQL storage engine (runtime/pg_engine.h) at its
//                   interface: one write session per transaction, holding its table's
//                   advisory lock, writing the object, its index columns and the change
//                   log; writers of one table are serial, of disjoint tables parallel.
//                   (Closures and group commit sit above that interface and are not
//                   measured here.)
//   pg-engine-grouped  the same engine, with the transactions that wait for a table
//                   while one of its sessions runs going into the next session together,
//                   each at its own position (one lock, one COMMIT for all of them): what
//                   the workspace's writer does with closures that share a table set.
//                   The grouping here is the benchmark's own, without closures.
//
// For the first three, a table is a bigint key and a bytea payload; the payload is the object's
// FlatBuffers encoding, the bytes the SQLite peers store. Each store works in a schema of its own
// (flatstore_bench_<pid>), created fresh when the store opens and dropped when it
// closes. The server's settings are its own (fsync and synchronous_commit on by
// default); the run's Synchronous setting does not reach it.
//
// All need a server: the URI in the environment variable FLATSTORE_BENCH_PG
// (`scripts/pg-cluster.sh start DIR` starts a private server and prints one).
#pragma once

#include <memory>
#include <string>

#include "tests/bench/peers.h"

namespace flatstore::bench {

// The URI in FLATSTORE_BENCH_PG; empty when it is unset, and the PostgreSQL scenarios are
// then left out.
std::string pgBenchUri();

// The `path` of a run is not used: the store's tables live on the server.
std::unique_ptr<Store> openPgGlobalLock(const std::string& path, Synchronous synchronous);
std::unique_ptr<Store> openPgNaive(const std::string& path, Synchronous synchronous);
std::unique_ptr<Store> openPgTableLock(const std::string& path, Synchronous synchronous);
std::unique_ptr<Store> openFlatstorePg(const std::string& path, Synchronous synchronous);
std::unique_ptr<Store> openPgEngine(const std::string& path, Synchronous synchronous);
std::unique_ptr<Store> openPgEngineGrouped(const std::string& path, Synchronous synchronous);

}  // namespace flatstore::bench
