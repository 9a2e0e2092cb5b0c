#include "runtime/backup.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "flatstore/status.h"
#include "runtime/sqlite.h"

namespace flatstore::internal {

namespace {

// Pages per backup step: small enough for a lively progress bar, large enough that the
// per-step overhead does not show.
constexpr int kPagesPerStep = 4096;

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::Status copyPages(Connection& src, const std::string& partial, const std::string& dest,
                       const BackupProgress& progress) {
  sqlite3* out = nullptr;
  int rc =
      sqlite3_open_v2(partial.c_str(), &out,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> closer(out, &sqlite3_close_v2);
  if (rc != SQLITE_OK) return sqliteStatus(rc, out, {}, absl::StrCat("creating ", dest));
  sqlite3_backup* b = sqlite3_backup_init(out, "main", src.db(), "main");
  if (b == nullptr) {
    return sqliteStatus(sqlite3_errcode(out), out, {}, absl::StrCat("backing up to ", dest));
  }
  while (true) {
    rc = sqlite3_backup_step(b, kPagesPerStep);
    if (progress) {
      int total = sqlite3_backup_pagecount(b);
      progress(total - sqlite3_backup_remaining(b), total);
    }
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_OK) {
      sqlite3_backup_finish(b);
      return sqliteStatus(rc, out, {}, absl::StrCat("backing up ", src.path(), " to ", dest));
    }
  }
  rc = sqlite3_backup_finish(b);
  if (rc != SQLITE_OK) {
    return sqliteStatus(rc, out, {}, absl::StrCat("backing up ", src.path(), " to ", dest));
  }
  closer.reset();
  if (std::rename(partial.c_str(), dest.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("renaming ", partial, " to ", dest));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status backupDatabase(const std::string& source, const std::string& dest,
                            const BackupProgress& progress) {
  if (!exists(source)) return absl::NotFoundError(absl::StrCat(source, ": no such file"));
  if (exists(dest)) {
    return absl::AlreadyExistsError(absl::StrCat(dest, " already exists; not overwriting it"));
  }
  FLATSTORE_ASSIGN_OR_RETURN(auto src, Connection::open(source, /*read_only=*/true));
  src->setBusyTimeout(absl::Seconds(30));
  // One read transaction for the whole copy: every page comes from this snapshot.
  FLATSTORE_RETURN_IF_ERROR(src->exec("BEGIN", source));
  absl::Status s = [&]() -> absl::Status {
    FLATSTORE_ASSIGN_OR_RETURN(Statement start,
                               src->prepare("SELECT count(*) FROM sqlite_master", source));
    FLATSTORE_RETURN_IF_ERROR(start.step(source).status());
    std::string partial = dest + ".partial";
    absl::Status copied = copyPages(*src, partial, dest, progress);
    if (!copied.ok()) {
      std::remove(partial.c_str());
      std::remove((partial + "-journal").c_str());
    }
    return copied;
  }();
  src->rollbackQuietly();
  return s;
}

}  // namespace flatstore::internal
