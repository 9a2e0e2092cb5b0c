#include "tests/bench/raw_sqlite.h"

namespace flatstore::bench {

std::string quote(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// One connection in WAL mode with synchronous=NORMAL, as flatstore's writer.
sqlite3* openRaw(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    die("open " + path + ": " + sqlite3_errmsg(db));
  }
  auto exec = [&](const char* sql) {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
      die(std::string(sql) + ": " + sqlite3_errmsg(db));
    }
  };
  // Wait for other connections' locks rather than failing (mt_insert_4x10k).
  sqlite3_busy_timeout(db, 30'000);
  exec("PRAGMA journal_mode = WAL");
  exec("PRAGMA synchronous = NORMAL");
  return db;
}

void execRaw(sqlite3* db, std::string_view sql) {
  std::string text(sql);
  if (sqlite3_exec(db, text.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    die(text + ": " + sqlite3_errmsg(db));
  }
}

// The generated DDL: the entity table and its index table with the SQL index.
void createRawTable(sqlite3* db, const TableDescription& d) {
  execRaw(db, d.create_table_sql);
  for (const IndexDescription& index : d.indexes) {
    execRaw(db, index.create_table_sql);
    execRaw(db, index.create_index_sql);
  }
}

}  // namespace flatstore::bench
