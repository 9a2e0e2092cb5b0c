// The change log on its own (runtime/change_log.h): the change-list codec (records,
// keys, positions; the documented byte layout, which other processes and older programs
// read; malformed lists give DataLoss, never a crash), and the readers of
// flatstore_changes over a database whose rows the test writes itself.
#include "runtime/change_log.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/catalog.h"
#include "tests/support/random.h"
#include "tests/support/status_macros.h"
#include "tests/support/temp_dir.h"

namespace flatstore::internal {
namespace {

using ::flatstore::testing::baseSeed;
using ::flatstore::testing::Rng;
using ::flatstore::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::span<const uint8_t> bytesOf(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string encode(const std::vector<LogRecord>& records) {
  std::string out;
  for (const LogRecord& r : records) appendLogRecord(r, &out);
  return out;
}

// Exact equality of values, reals by their bits (so -0.0 is not 0.0, and a NaN equals
// itself).
bool sameValue(const Value& a, const Value& b) {
  if (a.kind() != b.kind()) return false;
  if (a.kind() != Value::Kind::kReal) return a == b;
  double x = a.asReal(), y = b.asReal();
  return std::memcmp(&x, &y, sizeof x) == 0;
}

std::string describe(const LogRecord& r) {
  std::vector<std::string> key;
  for (const Value& v : r.key) key.push_back(v.toString());
  return absl::StrCat(r.table_id, "/", r.rowid, "@", r.position,
                      r.deleted ? " delete [" : " upsert [", absl::StrJoin(key, ", "), "]");
}

// What differs between two lists of records, or "" when they are the same.
std::string difference(const std::vector<LogRecord>& got, const std::vector<LogRecord>& want) {
  if (got.size() != want.size()) {
    return absl::StrCat("decoded ", got.size(), " records, encoded ", want.size());
  }
  for (size_t i = 0; i < got.size(); ++i) {
    const LogRecord& g = got[i];
    const LogRecord& w = want[i];
    bool same = g.table_id == w.table_id && g.rowid == w.rowid && g.position == w.position &&
                g.deleted == w.deleted && g.key.size() == w.key.size();
    for (size_t k = 0; same && k < g.key.size(); ++k) same = sameValue(g.key[k], w.key[k]);
    if (!same)
      return absl::StrCat("record ", i, ": decoded ", describe(g), ", encoded ", describe(w));
  }
  return "";
}

LogRecord upsert(int64_t table_id, int64_t rowid, uint16_t position) {
  LogRecord r;
  r.table_id = table_id;
  r.rowid = rowid;
  r.position = position;
  return r;
}
LogRecord deletion(int64_t table_id, int64_t rowid, uint16_t position, std::vector<Value> key) {
  return LogRecord{.table_id = table_id,
                   .rowid = rowid,
                   .position = position,
                   .deleted = true,
                   .key = std::move(key)};
}

// Records with every kind of key value and the edges of every field.
std::vector<LogRecord> edgeRecords() {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr double kInf = std::numeric_limits<double>::infinity();
  return {
      upsert(1, 1, 0),
      upsert(kMax, kMin, 0xffff),
      upsert(-7, 0, 1),
      deletion(2, 42, 3, {}),  // an automatic id: no key values
      deletion(3, 43, 4, {Value::text("orc"), Value::integer(7)}),
      deletion(4, kMax, 0xfffe,
               {Value(), Value::integer(kMin), Value::integer(kMax), Value::real(-0.0),
                Value::real(kInf), Value::real(-kInf), Value::real(1e-300)}),
      deletion(5, 1, 5,
               {Value::text(""), Value::text(std::string("n\0ul", 4)),
                Value::text("\xc3\xa9lf \xe2\x82\xac"), Value::text(std::string(70000, 'x'))}),
      upsert(6, 9, 6),
  };
}

TEST(ChangeLogCodecTest, RecordsRoundTrip) {
  std::vector<LogRecord> records = edgeRecords();
  std::string bytes = encode(records);
  absl::StatusOr<std::vector<LogRecord>> decoded = decodeLogRecords(bytesOf(bytes));
  ASSERT_OK(decoded);
  EXPECT_EQ(difference(*decoded, records), "");
}

// Queries treat a NaN as null (value.h), so a NaN key value is null in the log too.
TEST(ChangeLogCodecTest, NaNKeyValueRoundTripsAsNull) {
  std::vector<LogRecord> records = {
      deletion(1, 2, 3, {Value::real(std::numeric_limits<double>::quiet_NaN())})};
  absl::StatusOr<std::vector<LogRecord>> decoded = decodeLogRecords(bytesOf(encode(records)));
  ASSERT_OK(decoded);
  ASSERT_EQ(decoded->size(), 1u);
  ASSERT_EQ(decoded->front().key.size(), 1u);
  EXPECT_TRUE(decoded->front().key[0].isNull());
  EXPECT_EQ(difference(*decoded, records), "");
}

TEST(ChangeLogCodecTest, EmptyListDecodesToNoRecords) {
  absl::StatusOr<std::vector<LogRecord>> decoded = decodeLogRecords({});
  ASSERT_OK(decoded);
  EXPECT_THAT(*decoded, IsEmpty());
}

// The layout of change_log.h's comment, byte for byte: other processes, and programs of
// other versions, read these lists.
TEST(ChangeLogCodecTest, EncodingIsTheDocumentedLittleEndianLayout) {
  std::string up;
  appendLogRecord(upsert(0x0102030405060708, -2, 0xa1b2), &up);
  const std::string want_up = std::string("\x08\x07\x06\x05\x04\x03\x02\x01", 8) +  // table id
                              std::string("\xfe\xff\xff\xff\xff\xff\xff\xff", 8) +  // rowid -2
                              std::string("\xb2\xa1", 2) +                          // position
                              std::string("\x00", 1);  // op: upsert, nothing follows
  EXPECT_EQ(up, want_up);

  std::string del;
  appendLogRecord(
      deletion(1, 2, 3, {Value::integer(5), Value::text("ab"), Value(), Value::real(1.0)}), &del);
  const std::string want_del = std::string("\x01\0\0\0\0\0\0\0", 8) +
                               std::string("\x02\0\0\0\0\0\0\0", 8) + std::string("\x03\0", 2) +
                               std::string("\x01", 1) +                    // op: delete
                               std::string("\x04", 1) +                    // key count
                               std::string("\x01\x05\0\0\0\0\0\0\0", 9) +  // integer 5
                               std::string(
                                   "\x03\x02\0\0\0"
                                   "ab",
                                   7) +                                     // text "ab"
                               std::string("\x00", 1) +                     // null
                               std::string("\x02\0\0\0\0\0\0\xf0\x3f", 9);  // real 1.0
  EXPECT_EQ(del, want_del);
}

void expectDataLoss(const std::string& bytes, const std::string& what) {
  absl::StatusOr<std::vector<LogRecord>> decoded = decodeLogRecords(bytesOf(bytes));
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss) << what;
  EXPECT_THAT(decoded.status().message(), HasSubstr("malformed change list")) << what;
}

// A list cut anywhere but between two records is malformed; cut between records it is
// the records before the cut.
TEST(ChangeLogCodecTest, TruncatedListIsDataLossExceptAtRecordBoundaries) {
  std::vector<LogRecord> records = edgeRecords();
  records.pop_back();  // keep the 70,000-byte key out of the prefix loop
  records.pop_back();
  std::vector<size_t> boundaries = {0};
  std::string bytes;
  for (const LogRecord& r : records) {
    appendLogRecord(r, &bytes);
    boundaries.push_back(bytes.size());
  }
  size_t next_boundary = 0;
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    std::string prefix = bytes.substr(0, cut);
    if (cut == boundaries[next_boundary]) {
      absl::StatusOr<std::vector<LogRecord>> decoded = decodeLogRecords(bytesOf(prefix));
      ASSERT_OK(decoded);
      std::vector<LogRecord> want(records.begin(), records.begin() + next_boundary);
      EXPECT_EQ(difference(*decoded, want), "") << "cut at " << cut;
      next_boundary += 1;
    } else {
      expectDataLoss(prefix, absl::StrCat("cut at ", cut, " of ", bytes.size()));
    }
  }
}

TEST(ChangeLogCodecTest, UnknownOperationIsDataLoss) {
  std::string bytes = encode({upsert(1, 2, 3)});
  bytes[18] = 2;  // the op byte: only 0 and 1 exist
  expectDataLoss(bytes, "op 2");
}

TEST(ChangeLogCodecTest, UnknownValueKindIsDataLoss) {
  std::string bytes = encode({deletion(1, 2, 3, {Value::integer(9)})});
  bytes[20] = 4;  // the first key value's kind: 0 to 3 exist
  expectDataLoss(bytes, "kind 4");
  bytes[20] = static_cast<char>(0xff);
  expectDataLoss(bytes, "kind 255");
}

// A text length far beyond the list's end is refused before anything is copied.
TEST(ChangeLogCodecTest, TextLengthBeyondTheEndIsDataLoss) {
  std::string bytes = encode({deletion(1, 2, 3, {Value::text("abc")})});
  std::memset(bytes.data() + 21, 0xff, 4);  // the text's uint32 length
  expectDataLoss(bytes, "text length 2^32-1");
}

TEST(ChangeLogCodecTest, KeyCountBeyondTheValuesIsDataLoss) {
  std::string bytes = encode({deletion(1, 2, 3, {Value::integer(1)})});
  bytes[19] = 2;  // claims two values; one follows
  expectDataLoss(bytes, "key count 2");
}

// Random damage to valid lists: the decoder answers, with records or DataLoss, and
// never reads out of bounds (run under AddressSanitizer in CI).
TEST(ChangeLogCodecTest, DamagedListsDecodeOrGiveDataLoss) {
  const uint64_t seed = baseSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed, " (rerun: FLATSTORE_SEED=", seed, ")"));
  Rng rng(seed);
  std::vector<LogRecord> records = edgeRecords();
  records.erase(records.begin() + 6);  // the 70,000-byte key
  const std::string valid = encode(records);
  int data_loss = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string bytes = valid;
    for (int64_t n = rng.range(1, 4); n > 0; --n) {
      switch (rng.below(3)) {
        case 0:  // overwrite a byte
          bytes[rng.below(bytes.size())] = static_cast<char>(rng.below(256));
          break;
        case 1:  // drop the tail
          bytes.resize(rng.below(bytes.size() + 1));
          break;
        default:  // insert a byte
          bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(rng.below(bytes.size() + 1)),
                       static_cast<char>(rng.below(256)));
          break;
      }
      if (bytes.empty()) bytes.push_back('\x01');
    }
    absl::StatusOr<std::vector<LogRecord>> decoded = decodeLogRecords(bytesOf(bytes));
    if (!decoded.ok()) {
      ASSERT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss) << "round " << round;
      data_loss += 1;
    }
  }
  EXPECT_GT(data_loss, 0) << "no damage was ever detected";
}

// ---------------------------------------------------------------------------------------
// Reading flatstore_changes: rows written here, as the writer would write them.

class ChangeLogReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = Connection::open(dir_.file("log.db"), /*read_only=*/false);
    ASSERT_TRUE(c.ok()) << c.status();
    c_ = std::move(*c);
    ASSERT_OK(initializeDatabase(*c_, /*synchronous_full=*/false));
  }

  // Appends the log row of commit `seq` by `origin` with `records`, newest change `last`.
  void addCommit(uint64_t seq, int64_t origin, const std::vector<LogRecord>& records,
                 Versionstamp last = Versionstamp()) {
    addRow(seq, origin, encode(records), last);
  }
  void addRow(uint64_t seq, int64_t origin, const std::string& changes, Versionstamp last) {
    auto s = c_->prepare(
        "INSERT INTO flatstore_changes(seq, origin, changes, last_vs) "
        "VALUES(?, ?, ?, ?)");
    ASSERT_OK(s);
    s->bindInt(1, static_cast<int64_t>(seq));
    s->bindInt(2, origin);
    s->bindBlob(3, bytesOf(changes));
    s->bindInt(4, last.packed());
    ASSERT_OK(s->run("test log row"));
  }

  TempDir dir_;
  std::unique_ptr<Connection> c_;
};

TEST_F(ChangeLogReadTest, EntriesAfterASequenceComeInOrderWithTheirRecords) {
  std::vector<LogRecord> first = {upsert(1, 10, 0), deletion(2, 11, 1, {Value::text("k")})};
  std::vector<LogRecord> second = {upsert(1, 12, 0)};
  std::vector<LogRecord> third = {deletion(1, 10, 0, {}), upsert(2, 13, 1), upsert(2, 14, 2)};
  ASSERT_NO_FATAL_FAILURE(addCommit(1, 100, first));
  ASSERT_NO_FATAL_FAILURE(addCommit(2, 200, second));
  ASSERT_NO_FATAL_FAILURE(addCommit(3, 100, third));

  absl::StatusOr<std::vector<LogEntry>> all = readLogAfter(*c_, 0);
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].sequence, 1u);
  EXPECT_EQ((*all)[0].origin, 100);
  EXPECT_EQ(difference((*all)[0].records, first), "");
  EXPECT_EQ((*all)[1].sequence, 2u);
  EXPECT_EQ((*all)[1].origin, 200);
  EXPECT_EQ(difference((*all)[1].records, second), "");
  EXPECT_EQ((*all)[2].sequence, 3u);
  EXPECT_EQ(difference((*all)[2].records, third), "");

  absl::StatusOr<std::vector<LogEntry>> later = readLogAfter(*c_, 2);
  ASSERT_OK(later);
  ASSERT_EQ(later->size(), 1u);
  EXPECT_EQ(later->front().sequence, 3u);

  absl::StatusOr<std::vector<LogEntry>> others = readLogAfter(*c_, 0, /*skip_origin=*/100);
  ASSERT_OK(others);
  ASSERT_EQ(others->size(), 1u);
  EXPECT_EQ(others->front().sequence, 2u);
  EXPECT_EQ(others->front().origin, 200);
}

TEST_F(ChangeLogReadTest, AMalformedRowIsDataLoss) {
  ASSERT_NO_FATAL_FAILURE(addCommit(1, 100, {upsert(1, 10, 0)}));
  ASSERT_NO_FATAL_FAILURE(addRow(2, 200, "\x01\x02\x03", Versionstamp()));
  absl::StatusOr<std::vector<LogEntry>> read = readLogAfter(*c_, 0);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(read.status().message(), HasSubstr("flatstore_changes"));
  // The cached statement was reset on the error path: read again, it starts over.
  ASSERT_OK(c_->exec("DELETE FROM flatstore_changes WHERE seq = 2"));
  absl::StatusOr<std::vector<LogEntry>> again = readLogAfter(*c_, 0);
  ASSERT_OK(again);
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ(again->front().sequence, 1u);
}

TEST_F(ChangeLogReadTest, HeadIsTheNewestRowAndItsLastChange) {
  absl::StatusOr<LogHead> empty = readLogHead(*c_, "head");
  ASSERT_OK(empty);
  EXPECT_EQ(empty->sequence, 0u);  // the row every database starts with
  ASSERT_NO_FATAL_FAILURE(addCommit(1, 100, {upsert(1, 10, 0)}, Versionstamp::fromPacked(1 << 16)));
  // A commit that changed nothing carries the last change over.
  ASSERT_NO_FATAL_FAILURE(addCommit(2, 100, {}, Versionstamp::fromPacked(1 << 16)));
  absl::StatusOr<LogHead> head = readLogHead(*c_, "head");
  ASSERT_OK(head);
  EXPECT_EQ(head->sequence, 2u);
  EXPECT_EQ(head->last_change.commitSequence(), 1u);
  EXPECT_EQ(head->last_change.position(), 0u);
}

TEST_F(ChangeLogReadTest, FirstChangedSinceSkipsOwnCommitsAndNamesTheFirstChangedTable) {
  ASSERT_NO_FATAL_FAILURE(addCommit(1, 100, {upsert(7, 1, 0)}));
  ASSERT_NO_FATAL_FAILURE(addCommit(2, 200, {upsert(5, 1, 0), upsert(9, 2, 1)}));
  ASSERT_NO_FATAL_FAILURE(addCommit(3, 100, {upsert(3, 1, 0)}));
  const int64_t tables[] = {3, 7, 9};
  // Commit 1 and 3 are our own; commit 2 changed table 9 (index 2).
  absl::StatusOr<int> found = firstChangedSince(*c_, 0, /*own_origin=*/100, tables);
  ASSERT_OK(found);
  EXPECT_EQ(*found, 2);
  // As the other origin, commit 1 changed table 7 (index 1).
  found = firstChangedSince(*c_, 0, /*own_origin=*/200, tables);
  ASSERT_OK(found);
  EXPECT_EQ(*found, 1);
  // After commit 2, only our own commit 3.
  found = firstChangedSince(*c_, 2, /*own_origin=*/100, tables);
  ASSERT_OK(found);
  EXPECT_EQ(*found, -1);
  const int64_t untouched[] = {4};
  found = firstChangedSince(*c_, 0, /*own_origin=*/100, untouched);
  ASSERT_OK(found);
  EXPECT_EQ(*found, -1);
}

// When rows after `after` were pruned, the answer assumes a change.
TEST_F(ChangeLogReadTest, FirstChangedSinceAssumesAChangeWhenTheLogWasPruned) {
  ASSERT_NO_FATAL_FAILURE(addCommit(5, 100, {upsert(3, 1, 0)}));
  const int64_t tables[] = {8};
  absl::StatusOr<int> found = firstChangedSince(*c_, 2, /*own_origin=*/100, tables);
  ASSERT_OK(found);
  EXPECT_EQ(*found, 0);
}

TEST_F(ChangeLogReadTest, PrunedThroughReadsTheMetaRow) {
  absl::StatusOr<uint64_t> none = logPrunedThrough(*c_);
  ASSERT_OK(none);
  EXPECT_EQ(*none, 0u);
  ASSERT_OK(c_->exec("UPDATE flatstore_meta SET value = 41 WHERE key = 'log_pruned_through'"));
  absl::StatusOr<uint64_t> pruned = logPrunedThrough(*c_);
  ASSERT_OK(pruned);
  EXPECT_EQ(*pruned, 41u);
}

}  // namespace
}  // namespace flatstore::internal
