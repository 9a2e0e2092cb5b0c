// flatstore: look inside a flatstore file, check it, back it up, export and import.
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "tools/cli.h"

namespace flatstore::cli {
namespace {

struct Command {
  const char* name;
  int (*run)(const Args&);
  std::vector<std::string> with_value;
  std::vector<std::string> flags;
  const char* summary;
  const char* help;
};

const std::vector<Command>& commands() {
  static const std::vector<Command> kCommands = {
      {"inspect",
       &runInspect,
       {},
       {"--json"},
       "format, sizes, tables, counts and indexes",
       "usage: flatstore inspect FILE [--json]\n"
       "\n"
       "Prints the file's format version, page size, file and WAL sizes, the latest\n"
       "versionstamp, and per table: object count, bytes of objects, schema hash, the\n"
       "primary key and each index (key path, unique or not, back-fill complete or how far\n"
       "it got). --json prints the same as one JSON object. Opens FILE read-only.\n"},
      {"schema",
       &runSchema,
       {},
       {},
       "the stored schema as .fbs text",
       "usage: flatstore schema FILE [TABLE]\n"
       "\n"
       "Prints the schema stored with each table (or with TABLE) as .fbs text: the\n"
       "declarations the table uses, its attributes and its root type. TABLE is a table's\n"
       "full name or any unambiguous suffix of it (Monster, game.Monster).\n"},
      {"dump",
       &runDump,
       {"--where", "--order-by", "--limit", "--format"},
       {},
       "objects as JSON, filtered by the query engine",
       "usage: flatstore dump FILE TABLE [--where EXPR] [--order-by PATH [desc]]... [--limit N]\n"
       "                     [--format jsonl|json] [--quiet]\n"
       "\n"
       "Prints the table's objects decoded with the stored schema in flatc's JSON\n"
       "conventions, one per line (jsonl, the default) or as one array (json), each as\n"
       "{\"rowid\":..,\"versionstamp\":..,\"key\":{..},\"object\":{..}}.\n"
       "EXPR uses key paths and the typed API's operators and runs through the same query\n"
       "engine, so indexes are used and the answers are the same:\n"
       "  hp > 10 and color == Red        equipped.Weapon.damage in (3, 4)\n"
       "  email is null                   not (name == \"orc\" or realm != 1)\n"
       "Operators: == != < <= > >= in, not in, is null, is not null, and, or, not.\n"
       "Without --order-by objects come in rowid order.\n"},
      {"check",
       &runCheck,
       {},
       {"--quick"},
       "verify every object, index row and key",
       "usage: flatstore check FILE [--quick] [--quiet]\n"
       "\n"
       "Runs SQLite's integrity check, verifies every object against its stored schema,\n"
       "checks that every index row matches its object and no object lacks one, that key\n"
       "columns match the object's key, and that the change log is well formed. Prints one\n"
       "line per problem (table, rowid, what). Exit status: 0 clean, 1 problems found,\n"
       "2 usage or I/O error. Opens FILE read-only.\n"
       "--quick runs SQLite's quick_check instead of integrity_check: it skips comparing\n"
       "SQL indexes with their tables, which on a large file is most of SQLite's share.\n"},
      {"export",
       &runExport,
       {"-o"},
       {},
       "every table as JSON lines, and the dictionary",
       "usage: flatstore export FILE [-o DIR] [--quiet]\n"
       "\n"
       "Writes every table to DIR/TABLE.jsonl (as dump prints it) and the dictionary to\n"
       "DIR/dictionary.jsonl. DIR defaults to the current directory and is created if\n"
       "missing. Reads one snapshot of FILE, read-only.\n"},
      {"import",
       &runImport,
       {"--like", "--chunk"},
       {"--restart"},
       "JSON lines into a table, through transactions",
       "usage: flatstore import FILE TABLE [INPUT] [--like OTHER] [--chunk N] [--restart]\n"
       "                        [--quiet]\n"
       "       flatstore import FILE dictionary [INPUT] [--quiet]\n"
       "\n"
       "Reads JSON lines from INPUT (standard input when absent or '-'): each line is an\n"
       "object in flatc's JSON, or a line as dump and export write it. Each object is\n"
       "encoded with the stored schema and written through the library's transactions in\n"
       "chunks of N lines (default 1000), so keys, unique indexes and the change log stay\n"
       "right. Objects with a primary key replace the object with the same key (upsert);\n"
       "tables with automatic ids get new objects. A rejected line is reported with its\n"
       "line number and reason and the rest goes on (exit status 1 at the end).\n"
       "An interrupted import resumes: the number of lines committed is kept in the file's\n"
       "dictionary, and running the same command again skips them (--restart starts over).\n"
       "When FILE lacks TABLE, --like OTHER takes its description from the flatstore file\n"
       "OTHER (for instance the file an export came from). 'dictionary' imports a\n"
       "dictionary.jsonl as export writes it.\n"},
      {"backup",
       &runBackup,
       {},
       {},
       "a consistent online copy",
       "usage: flatstore backup FILE DEST [--quiet]\n"
       "\n"
       "Copies FILE to the new file DEST while other processes keep writing: the copy is\n"
       "one committed state of FILE, opens as a flatstore file and passes check. Uses\n"
       "SQLite's online backup API inside one read transaction; DEST appears only once\n"
       "complete and is never overwritten.\n"},
      {"watch",
       &runWatch,
       {"--since"},
       {},
       "follow commits as they happen",
       "usage: flatstore watch FILE [TABLE] [--since VERSIONSTAMP]\n"
       "\n"
       "Follows commits to FILE by any process and prints each change as a JSON line:\n"
       "{\"versionstamp\":..,\"table\":..,\"rowid\":..,\"op\":\"upsert\"|\"delete\",\"key\":..,\n"
       "\"object\":..} (the object as it is when printed; null once deleted). Starts at the\n"
       "latest commit, or after --since. Runs until interrupted. Opens FILE read-only.\n"},
  };
  return kCommands;
}

void printHelp() {
  std::printf(
      "usage: flatstore COMMAND FILE [ARGS...]\n"
      "\n"
      "Looks inside a flatstore file, checks it, backs it up, exports and imports it.\n"
      "TABLE is a table's full name or any unambiguous suffix of it.\n"
      "\n"
      "commands:\n");
  for (const Command& c : commands()) std::printf("  %-8s %s\n", c.name, c.summary);
  std::printf(
      "\n"
      "options for every command:\n"
      "  --help    this text, or a command's own with 'flatstore COMMAND --help'\n"
      "  --quiet   no progress bar (it is drawn on standard error only when that is a\n"
      "            terminal), and no closing summary line from check and import\n"
      "\n"
      "Errors are printed as 'flatstore: FILE: message' with exit status 2.\n");
}

}  // namespace
}  // namespace flatstore::cli

int main(int argc, char** argv) {
  using namespace flatstore::cli;
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    printHelp();
    return argc < 2 ? kExitError : kExitOk;
  }
  std::string_view name = argv[1];
  for (const Command& c : commands()) {
    if (name != c.name) continue;
    std::vector<std::string> rest(argv + 2, argv + argc);
    absl::StatusOr<Args> args = parseArgs(rest, c.with_value, c.flags);
    if (!args.ok()) return usage(c.name, std::string(args.status().message()));
    if (args->has("--help")) {
      std::fputs(c.help, stdout);
      return kExitOk;
    }
    return c.run(*args);
  }
  std::fprintf(stderr, "flatstore: unknown command '%s'\nTry 'flatstore --help'.\n", argv[1]);
  return kExitError;
}
