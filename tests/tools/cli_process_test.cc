// The `flatstore` tool next to other processes: a backup during a write storm, watch
// following another process's commits, an interrupted import that resumes, and the
// progress bar on a terminal and not in a pipe.
#include <pty.h>
#include <sqlite3.h>

#include "gmock/gmock.h"
#include "tests/multiprocess/process_util.h"
#include "tests/tools/cli_util.h"

namespace flatstore::testing {
namespace {

using test::game::Event;
using test::game::Monster;
using ::testing::HasSubstr;
using F = test::game::MonsterFields;

int64_t hpSum(const std::string& path, int64_t* count) {
  auto ws = Workspace::open(path);
  EXPECT_TRUE(ws.ok()) << ws.status();
  if (!ws.ok()) return -1;
  auto all = (*ws)->fetch<Monster>().all();
  EXPECT_TRUE(all.ok());
  int64_t sum = 0;
  for (const auto& m : *all) sum += m->hp();
  *count = static_cast<int64_t>(all->size());
  return sum;
}

TEST(CliProcessTest, BackupDuringAWriteStormIsConsistent) {
  TempDir dir;
  std::string path = dir.file("storm.db");
  auto writer = spawnHelper({"storm", path});
  ASSERT_TRUE(writer.ok()) << writer.status();
  auto ws = Workspace::open(path);
  ASSERT_TRUE(ws.ok()) << ws.status();
  auto before = (*ws)->latestVersionstamp();
  ASSERT_TRUE(before.ok());

  // Read-only commands work on the live file while it is written.
  CliResult live = runCli(dir, {"check", path});
  EXPECT_EQ(live.exit_code, 0) << live.out << live.err;
  CliResult dump = runCli(dir, {"dump", path, "Monster", "--where", "hp >= 0"});
  EXPECT_EQ(dump.exit_code, 0) << dump.err;
  EXPECT_EQ(dumpRowids(dump.out).size(), 20u);

  CliResult tool = runCli(dir, {"backup", path, dir.file("tool-copy.db")});
  EXPECT_EQ(tool.exit_code, 0) << tool.err;
  EXPECT_EQ(tool.err, "") << "no progress bar when standard error is not a terminal";
  ASSERT_TRUE((*ws)->backup(dir.file("library-copy.db")).ok());
  absl::Status again = (*ws)->backup(dir.file("library-copy.db"));
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists) << again;

  auto after = (*ws)->latestVersionstamp();
  ASSERT_TRUE(after.ok());
  ASSERT_TRUE((*ws)->shutdown().ok());
  (*writer)->closeInput();
  auto commits = (*writer)->readLine();
  ASSERT_TRUE(commits.ok()) << commits.status();
  ASSERT_TRUE((*writer)->waitSuccess().ok());
  EXPECT_GT(*after, *before) << "the storm did not write during the backups";

  for (const char* copy : {"tool-copy.db", "library-copy.db"}) {
    CliResult check = runCli(dir, {"check", dir.file(copy)});
    EXPECT_EQ(check.exit_code, 0) << copy << ": " << check.out << check.err;
    int64_t count = 0;
    // Every transaction keeps the sum at 20 * 100: a copy of one committed state has it.
    EXPECT_EQ(hpSum(dir.file(copy), &count), 2000) << copy;
    EXPECT_EQ(count, 20) << copy;
  }
}

TEST(CliProcessTest, WatchPrintsAnotherProcesssCommitsInOrder) {
  TempDir dir;
  std::string path = dir.file("watch.db");
  seedFile(path, 3, 0);
  auto writer = spawnHelper({"commits", path, "15"});
  ASSERT_TRUE(writer.ok()) << writer.status();
  std::string since;
  {
    auto ws = Workspace::open(path);
    ASSERT_TRUE(ws.ok());
    since = (*ws)->latestVersionstamp()->toString();
  }
  auto watch = Child::spawn({FLATSTORE_CLI, "watch", path, "Monster", "--since", since});
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE((*writer)->send("go").ok());
  std::string last;
  for (int i = 0; i < 15; ++i) {
    auto line = (*watch)->readLine();
    ASSERT_TRUE(line.ok()) << line.status();
    EXPECT_THAT(*line, HasSubstr(absl::StrCat("\"table\":\"flatstore.test.game.Monster\"")));
    EXPECT_THAT(*line, HasSubstr("\"op\":\"upsert\""));
    EXPECT_THAT(*line, HasSubstr(absl::StrCat("\"key\":{\"name\":\"w-", i, "\",\"realm\":0}")));
    std::string vs = line->substr(line->find("\"versionstamp\":\"") + 16, 20);
    EXPECT_GT(vs, last) << "versionstamps go up";
    last = vs;
  }
  ASSERT_EQ(*(*writer)->readLine(), "done");
  ASSERT_TRUE((*writer)->waitSuccess().ok());
  (*watch)->kill(SIGTERM);
  ASSERT_TRUE((*watch)->waitSuccess().ok());
}

TEST(CliProcessTest, AnInterruptedImportResumes) {
  TempDir dir;
  std::string path = dir.file("resume.db");
  seedFile(path, 2, 0);
  std::string lines;
  for (int i = 0; i < 1000; ++i) {
    absl::StrAppend(&lines, "{\"kind\": \"imported\", \"at\": ", i, "}\n");
  }
  // The first run reads standard input from a pipe; it gets 500 lines and is killed
  // once they are committed (chunks of 100), while it waits for more.
  auto first = Child::spawn({FLATSTORE_CLI, "import", path, "Event", "--chunk", "100"});
  ASSERT_TRUE(first.ok());
  size_t half = 0;
  for (int i = 0; i < 500; ++i) half = lines.find('\n', half) + 1;
  ASSERT_TRUE((*first)->send(lines.substr(0, half - 1)).ok());
  const std::string cursor_sql =
      "SELECT value FROM flatstore_kv WHERE key = 'flatstore.chunked.flatstore import "
      "flatstore.test.game.Event -'";
  std::string cursor;
  absl::Time deadline = absl::Now() + kBoundedWait;
  while (cursor != "500" && absl::Now() < deadline) {
    // Bounded polling of another process's progress: nothing to wait on but the file.
    sqlite3* db = nullptr;
    sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, cursor_sql.c_str(), -1, &s, nullptr) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
      cursor.assign(reinterpret_cast<const char*>(sqlite3_column_blob(s, 0)),
                    static_cast<size_t>(sqlite3_column_bytes(s, 0)));
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(cursor, "500");
  (*first)->kill(SIGKILL);
  ASSERT_TRUE((*first)->waitExit().ok());

  std::string input = dir.file("all.jsonl");
  writeFile(input, lines);
  CliResult second = runCli(dir, {"import", path, "Event", "-"}, input);
  EXPECT_EQ(second.exit_code, 0) << second.err;
  EXPECT_THAT(second.err, HasSubstr("500 inserted, 0 updated, 0 rejected of 1000 lines"));
  auto ws = Workspace::open(path);
  ASSERT_TRUE(ws.ok());
  // Events have automatic ids: a line imported twice would be two objects.
  EXPECT_EQ(*(*ws)->fetch<Event>().count(), 1000);
  using E = test::game::EventFields;
  EXPECT_EQ(*(*ws)->fetch<Event>().where(E::at == 499).count(), 1);
  EXPECT_EQ(*(*ws)->fetch<Event>().where(E::at == 500).count(), 1);
}

// Runs the tool on a pseudo-terminal (as stdout and stderr) and returns all it printed.
std::string runOnTerminal(const std::vector<std::string>& args) {
  std::vector<std::string> full = {FLATSTORE_CLI};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : full) argv.push_back(a.data());
  argv.push_back(nullptr);
  int master = -1;
  pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  if (pid == 0) {
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  std::string out;
  absl::Time deadline = absl::Now() + kBoundedWait;
  while (absl::Now() < deadline) {
    pollfd p{master, POLLIN, 0};
    int r = ::poll(&p, 1, 1000);
    if (r <= 0) continue;
    char buffer[4096];
    ssize_t n = ::read(master, buffer, sizeof buffer);
    if (n <= 0) break;  // EIO once the child is gone
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(master);
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return out;
}

TEST(CliProcessTest, ProgressBarOnATerminalOnly) {
  TempDir dir;
  std::string path = dir.file("progress.db");
  seedFile(path, 200, 0);
  std::string terminal = runOnTerminal({"check", path});
  EXPECT_THAT(terminal, HasSubstr("check [##############################] 100% 200/200 objects"));
  EXPECT_THAT(terminal, HasSubstr("objects/s, 0:00 left"));
  EXPECT_THAT(terminal, HasSubstr("ok: 200 objects in 2 tables"));
  std::string quiet = runOnTerminal({"check", path, "--quiet"});
  EXPECT_THAT(quiet, ::testing::Not(HasSubstr("objects/s")));

  CliResult piped = runCli(dir, {"check", path});
  EXPECT_EQ(piped.exit_code, 0);
  EXPECT_EQ(piped.err, "");
  CliResult dump = runCli(dir, {"dump", path, "Monster"});
  EXPECT_EQ(dump.err, "");
  std::string dump_terminal = runOnTerminal({"dump", path, "Monster", "--limit", "10"});
  EXPECT_THAT(dump_terminal, HasSubstr("dump flatstore.test.game.Monster ["));
  EXPECT_THAT(dump_terminal, HasSubstr("10/10 objects"));
}

}  // namespace
}  // namespace flatstore::testing
