#include "tests/support/pg_schema.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/postgres.h"

namespace flatstore::testing {

const char* PgTestSchema::serverUri() {
  const char* uri = std::getenv("FLATSTORE_TEST_PG");
  return uri != nullptr && *uri != '\0' ? uri : nullptr;
}

PgTestSchema::PgTestSchema(std::string_view prefix) {
  static std::atomic<int> counter{0};
  name_ = absl::StrCat("fs_", std::string(prefix), "_", ::getpid(), "_", counter++);
  auto admin = internal::PgConnection::connect(serverUri());
  EXPECT_TRUE(admin.ok()) << admin.status();
  if (!admin.ok()) return;
  absl::Status made = (*admin)->execute(
      absl::StrCat("DROP SCHEMA IF EXISTS ", name_, " CASCADE; CREATE SCHEMA ", name_));
  EXPECT_TRUE(made.ok()) << made;
  if (made.ok()) admin_ = std::move(*admin);
}

PgTestSchema::~PgTestSchema() {
  if (admin_ == nullptr) return;
  absl::Status dropped = admin_->execute(absl::StrCat("DROP SCHEMA ", name_, " CASCADE"));
  EXPECT_TRUE(dropped.ok()) << dropped;
}

std::string PgTestSchema::uri() const {
  std::string server = serverUri();
  return absl::StrCat(server, server.find('?') == std::string::npos ? "?" : "&",
                      "options=-csearch_path%3D", name_);
}

absl::Status PgTestSchema::execute(std::string_view sql) {
  if (admin_ == nullptr) return absl::FailedPreconditionError("no admin connection");
  return admin_->execute(sql);
}

absl::StatusOr<std::string> PgTestSchema::queryText(std::string_view sql) {
  if (admin_ == nullptr) return absl::FailedPreconditionError("no admin connection");
  absl::StatusOr<internal::PgResult> r = admin_->query(sql);
  if (!r.ok()) return r.status();
  if (r->rows() == 0 || r->isNull(0, 0)) return std::string();
  absl::StatusOr<std::string_view> text = r->getText(0, 0);
  if (!text.ok()) return text.status();
  return std::string(*text);
}

std::string engineName(const ::testing::TestParamInfo<Engine>& info) {
  return info.param == Engine::kSqlite ? "SQLite" : "PostgreSQL";
}

void PrintTo(Engine engine, std::ostream* os) {
  *os << (engine == Engine::kSqlite ? "SQLite" : "PostgreSQL");
}

TestDatabase::TestDatabase(Engine engine, std::string_view name) {
  if (engine == Engine::kSqlite) {
    location_ = dir_.file(absl::StrCat(std::string(name), ".db"));
    return;
  }
  if (PgTestSchema::serverUri() == nullptr) {
    available_ = false;
    return;
  }
  schema_ = std::make_unique<PgTestSchema>(name);
  if (schema_->ok()) location_ = schema_->uri();
}

}  // namespace flatstore::testing
