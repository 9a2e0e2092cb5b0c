// Fetching objects: typed query builders and their results.
//
//   auto result = ws->fetch<game::Monster>()
//                     .where(F::hp > 10 && F::color == game::Color::Red)
//                     .orderBy(F::hp.descending())
//                     .limit(20)
//                     .all();                      // StatusOr<FetchedResult<Monster>>
//
// A query compiles to SQL where its fields are primary-key columns or complete indexes,
// and is evaluated in memory on the FlatBuffers objects otherwise; both give the same
// answer (three-valued logic, SQLite's ordering with nulls first when ascending, ties
// broken by rowid). Values are always bound as SQL parameters.
//
// Thread-safety: a Query is a value used by one thread; a FetchedResult is immutable and
// may be shared across threads.
#ifndef FLATSTORE_FETCH_H_
#define FLATSTORE_FETCH_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "flatstore/detail/query_source.h"
#include "flatstore/entity.h"
#include "flatstore/query.h"
#include "flatstore/status.h"
#include "flatstore/table_description.h"

namespace flatstore {

// The objects a query returned, in query order, shared and immutable.
template <class T>
class FetchedResult {
 public:
  using Entity = typename EntityTraits<T>::Entity;
  using Pointer = std::shared_ptr<const Entity>;

  FetchedResult() = default;
  FetchedResult(std::vector<Pointer> objects, internal::QuerySpec spec,
                uint64_t observed_sequence = 0)
      : objects_(std::move(objects)),
        spec_(std::move(spec)),
        observed_sequence_(observed_sequence) {}

  size_t size() const { return objects_.size(); }
  bool empty() const { return objects_.empty(); }
  const Pointer& operator[](size_t i) const { return objects_[i]; }
  auto begin() const { return objects_.begin(); }
  auto end() const { return objects_.end(); }
  const std::vector<Pointer>& objects() const { return objects_; }
  // The query that produced this result.
  const internal::QuerySpec& spec() const { return spec_; }
  // A commit sequence the result is at least as new as.
  uint64_t observedSequence() const { return observed_sequence_; }

 private:
  std::vector<Pointer> objects_;
  internal::QuerySpec spec_;
  uint64_t observed_sequence_ = 0;
};

// A typed query over entity T. Build it with where/orderBy/limit/offset, then run it
// with all(), first() or count().
template <class T>
class Query {
 public:
  using Entity = typename EntityTraits<T>::Entity;

  explicit Query(internal::QuerySource* source) : source_(source) {}

  // Keeps objects for which `predicate` is true (not false, not unknown). Several
  // where() calls are combined with &&.
  Query& where(const Predicate<T>& predicate) {
    spec_.where = spec_.where == nullptr ? predicate.shared()
                                         : (Predicate<T>(spec_.where) && predicate).shared();
    return *this;
  }
  // Adds sort keys, most significant first.
  template <class... O>
  Query& orderBy(const Ordering<T>& first, const O&... rest) {
    spec_.order.emplace_back(first.field, first.descending);
    (spec_.order.emplace_back(rest.field, rest.descending), ...);
    return *this;
  }
  Query& limit(int64_t n) {
    spec_.limit = n;
    return *this;
  }
  Query& offset(int64_t n) {
    spec_.offset = n;
    return *this;
  }

  // All matching objects. InvalidArgument for a negative limit or offset; DataLoss if
  // a stored object fails verification.
  absl::StatusOr<FetchedResult<T>> all() const {
    FLATSTORE_RETURN_IF_ERROR(checkWindow());
    uint64_t sequence = source_->committedSequence();
    FLATSTORE_ASSIGN_OR_RETURN(auto rows, source_->runQuery(Entity::description(), spec_));
    std::vector<std::shared_ptr<const Entity>> objects;
    objects.reserve(rows.size());
    for (auto& r : rows) {
      objects.push_back(Entity::fromVerified(std::move(r.bytes), r.rowid, r.versionstamp));
    }
    return FetchedResult<T>(std::move(objects), spec_, sequence);
  }
  // The first matching object, or null when none matches. Errors as all().
  absl::StatusOr<std::shared_ptr<const Entity>> first() const {
    Query q = *this;
    q.spec_.limit = std::min<int64_t>(spec_.limit.value_or(1), 1);
    FLATSTORE_ASSIGN_OR_RETURN(auto result, q.all());
    return result.empty() ? nullptr : result[0];
  }
  // The number of matching objects (limit and offset apply): the size of what all()
  // would return. Errors as all(), whichever path answers the query.
  absl::StatusOr<int64_t> count() const {
    FLATSTORE_RETURN_IF_ERROR(checkWindow());
    return source_->runCount(Entity::description(), spec_);
  }

  const internal::QuerySpec& spec() const { return spec_; }

 private:
  // all(), first() and count() refuse the same windows, before any path runs.
  absl::Status checkWindow() const {
    if ((spec_.limit.has_value() && *spec_.limit < 0) || spec_.offset < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "query of table ", std::string(Entity::description().table_name), ": limit (",
          spec_.limit.has_value() ? absl::StrCat(*spec_.limit) : std::string("none"),
          ") and offset (", spec_.offset, ") must not be negative"));
    }
    return absl::OkStatus();
  }

  internal::QuerySource* source_;
  internal::QuerySpec spec_;
};

namespace internal {

template <class... V, class... K>
constexpr bool keyAccepts(std::tuple<V...>*, std::tuple<K...>*) {
  if constexpr (sizeof...(V) != sizeof...(K)) {
    return false;
  } else {
    return (ComparableWith<V, K> && ...);
  }
}

}  // namespace internal

// `K...` can be a primary key of T: one value per key field (EntityTraits<T>::Key, an
// automatic id is one int64_t), each of a type a query could compare with that field.
// So get<T>(key...) takes what deletion(key...) takes, in number and order, and no
// value is narrowed on the way (an int64_t for an int32 key field is looked up as it
// is, and finds nothing when it does not fit).
template <class T, class... K>
concept PrimaryKeyOf = internal::keyAccepts(static_cast<typename EntityTraits<T>::Key*>(nullptr),
                                            static_cast<std::tuple<K...>*>(nullptr));

// Looks up one object of T by primary key (or automatic id) through `source`: null
// when absent.
template <class T, class... K>
requires PrimaryKeyOf<T, K...>
    absl::StatusOr<std::shared_ptr<const typename EntityTraits<T>::Entity>> getByKey(
        internal::QuerySource* source, const K&... key) {
  using Entity = typename EntityTraits<T>::Entity;
  internal::QuerySpec spec;
  spec.key = std::vector<Value>{Value::of(key)...};
  FLATSTORE_ASSIGN_OR_RETURN(auto rows, source->runQuery(Entity::description(), spec));
  if (rows.empty()) return std::shared_ptr<const Entity>();
  auto& r = rows.front();
  return Entity::fromVerified(std::move(r.bytes), r.rowid, r.versionstamp);
}

}  // namespace flatstore

#endif  // FLATSTORE_FETCH_H_
