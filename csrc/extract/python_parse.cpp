// CPython 3.11's grammar (Grammar/python.gram) without its invalid_* rules, as a recursive-descent parser
// that accepts exactly what the PEG accepts. Rules are restructured where that avoids re-parsing (a
// parenthesised atom is parsed once, then classified as tuple, group or generator by the next token), and
// memoised where the PEG backtracks over the same text (assignment targets, t_primary, patterns).
//
// Every rule returns the depth of the AST node it stands for (-1: no parse), because CPython refuses trees
// deeper than its AST conversion allows; and every rule entered adds to a level count that mirrors
// pegen's C stack guard (6000 rule activations), so the depth limits fall where CPython's do.
#include <algorithm>
#include <unordered_map>

#include "python_syntax.hpp"

namespace codescaler::python {
namespace {

constexpr int kFail = -1;
constexpr int kNotMatchStatement = -2;  // "match" did not start a match statement: parse a simple statement
constexpr int kMaxStack = 6000;          // pegen's MAXSTACK
// This parser's rules count 16 levels more than pegen enters on the way from the file to a statement's
// expressions; measured on nested brackets holding lambdas or unary minus, where the stack guard and not
// the AST depth limit decides, the per-bracket and per-operator levels match pegen's exactly.
constexpr int kFileLevels = 2 - 16;

int max3(int a, int b, int c) { return std::max(a, std::max(b, c)); }

bool is_augassign(T t) {
  switch (t) {
    case T::plusequal: case T::minequal: case T::starequal: case T::atequal: case T::slashequal:
    case T::percentequal: case T::amperequal: case T::vbarequal: case T::circumflexequal:
    case T::leftshiftequal: case T::rightshiftequal: case T::doublestarequal: case T::doubleslashequal:
      return true;
    default:
      return false;
  }
}

bool is_comparison(T t) {
  switch (t) {
    case T::eqequal: case T::notequal: case T::lessequal: case T::less: case T::greaterequal: case T::greater:
    case T::kw_in:
      return true;
    default:
      return false;
  }
}

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, const std::vector<int>& string_depth, Failure& failure, Budget& budget)
      : tokens_(tokens), string_depth_(string_depth), failure_(failure), budget_(budget) {}

  int run(Start start) {
    const int depth = start == Start::file ? file() : fstring();
    if (depth >= 0 && !stopped_) return depth;
    if (!failure_.message) {
      failure_.message = "invalid syntax";
      failure_.offset = tokens_[std::min(reach_, tokens_.size() - 1)].begin;
    }
    return kFail;
  }

 private:
  // Entering a rule: one budget step, and `weight` levels of pegen's stack (the rules pegen would have
  // entered on the way).
  class Scope {
   public:
    Scope(Parser& p, int weight) : p_(p), weight_(weight) {
      p_.level_ += weight;
      if (p_.stopped_) return;
      if (p_.level_ > kMaxStack) p_.stop("too complex: parser stack overflow (MemoryError)", false);
      else if (!p_.budget_.spend()) p_.stop("parse budget exhausted", true);
    }
    ~Scope() { p_.level_ -= weight_; }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    bool stopped() const { return p_.stopped_; }

   private:
    Parser& p_;
    int weight_;
  };

  void stop(const char* message, bool budget) {
    stopped_ = true;
    failure_.message = message;
    failure_.offset = tokens_[pos_].begin;
    failure_.budget = budget;
  }

  T type() const {
    reach_ = std::max(reach_, pos_);
    return tokens_[pos_].type;
  }
  T peek(std::size_t k) const {
    const std::size_t i = std::min(pos_ + k, tokens_.size() - 1);
    reach_ = std::max(reach_, i);
    return tokens_[i].type;
  }
  bool at(T t) const { return type() == t; }
  bool eat(T t) {
    if (!at(t)) return false;
    ++pos_;
    return true;
  }
  bool soft(std::uint8_t flag) const { return at(T::name) && (tokens_[pos_].flags & flag); }
  bool t_lookahead() const { return at(T::lpar) || at(T::lsqb) || at(T::dot); }

  // Memo of rules the PEG re-enters at the same token: (rule, position) -> (end position, depth). The PEG
  // only backtracks within a statement (a failed statement fails the parse), so each statement starts
  // with an empty memo.
  enum Memo : std::uint64_t { m_t_primary, m_star_target, m_target_with_star_atom, m_del_target, m_closed_pattern };
  template <class F>
  int memo(Memo rule, F&& parse) {
    const std::uint64_t key = static_cast<std::uint64_t>(pos_) * 8 + rule;
    if (const auto it = memo_.find(key); it != memo_.end()) {
      if (it->second.second >= 0) pos_ = it->second.first;
      return it->second.second;
    }
    const std::size_t start = pos_;
    const int depth = parse();
    if (depth < 0) pos_ = start;
    memo_[key] = {pos_, depth};
    memo_keys_.push_back(key);
    return depth;
  }
  void forget() {
    for (const std::uint64_t key : memo_keys_) memo_.erase(key);
    memo_keys_.clear();
  }

  // ---------------------------------------------------------------- statements

  int file() {
    Scope s(*this, kFileLevels);
    if (s.stopped()) return kFail;
    int deepest = 0;
    while (!at(T::end_marker)) {
      const int d = statement();
      if (d < 0) return kFail;
      deepest = std::max(deepest, d);
    }
    return deepest + 1;  // Module
  }

  int fstring() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    return star_expressions();
  }

  // A failed statement fails the whole parse: no rule can use a statement's tokens otherwise.
  int statement() {
    Scope s(*this, 2);
    if (s.stopped()) return kFail;
    forget();
    switch (type()) {
      case T::kw_def: case T::at: case T::kw_class: return definition();
      case T::kw_async:
        if (peek(1) == T::kw_def) return definition();
        if (peek(1) == T::kw_with) return with_stmt();
        if (peek(1) == T::kw_for) return for_stmt();
        return kFail;
      case T::kw_if: return if_stmt(T::kw_if);
      case T::kw_with: return with_stmt();
      case T::kw_for: return for_stmt();
      case T::kw_try: return try_stmt();
      case T::kw_while: return while_stmt();
      case T::name:
        if (soft(kSoftMatch)) {
          const int d = match_stmt();
          if (d != kNotMatchStatement) return d;
        }
        break;
      default:
        break;
    }
    return simple_stmts();
  }

  int simple_stmts() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    int deepest = simple_stmt();
    if (deepest < 0) return kFail;
    while (eat(T::semi)) {
      if (at(T::newline)) break;
      const int d = simple_stmt();
      if (d < 0) return kFail;
      deepest = std::max(deepest, d);
    }
    return eat(T::newline) ? deepest : kFail;
  }

  int simple_stmt() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    switch (type()) {
      case T::kw_return: {
        ++pos_;
        return 1 + optional([&] { return star_expressions(); }, 0);
      }
      case T::kw_import: return import_name();
      case T::kw_from: return import_from();
      case T::kw_raise: {
        ++pos_;
        const std::size_t mark = pos_;
        int d = expression();
        if (d < 0) {
          pos_ = mark;
          return 1;
        }
        if (at(T::kw_from)) {
          const std::size_t m = pos_;
          ++pos_;
          const int f = expression();
          if (f < 0) pos_ = m;
          else d = std::max(d, f);
        }
        return d + 1;
      }
      case T::kw_pass: case T::kw_break: case T::kw_continue: ++pos_; return 1;
      case T::kw_del: {
        ++pos_;
        const int d = del_targets();
        if (d < 0 || !(at(T::semi) || at(T::newline))) return kFail;
        return d + 1;
      }
      case T::kw_yield: {
        const int d = yield_expr();
        return d < 0 ? kFail : d + 1;
      }
      case T::kw_assert: {
        ++pos_;
        int d = expression();
        if (d < 0) return kFail;
        if (at(T::comma)) {
          const std::size_t m = pos_;
          ++pos_;
          const int msg = expression();
          if (msg < 0) pos_ = m;
          else d = std::max(d, msg);
        }
        return d + 1;
      }
      case T::kw_global: case T::kw_nonlocal: {
        ++pos_;
        if (!eat(T::name)) return kFail;
        for (;;) {
          const std::size_t m = pos_;
          if (!eat(T::comma) || !eat(T::name)) {
            pos_ = m;
            break;
          }
        }
        return 1;
      }
      default:
        break;
    }
    const std::size_t mark = pos_;
    const int a = assignment();
    if (a >= 0) return a;
    if (stopped_) return kFail;
    pos_ = mark;
    const int e = star_expressions();
    return e < 0 ? kFail : e + 1;  // Expr
  }

  // `parse` or nothing: its depth, or `none` with the position restored.
  template <class F>
  int optional(F&& parse, int none) {
    const std::size_t mark = pos_;
    const int d = parse();
    if (d >= 0) return d;
    pos_ = mark;
    return none;
  }

  int assignment() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    const std::size_t mark = pos_;
    auto annotated = [&](int target) -> int {  // ':' expression ['=' annotated_rhs], after the target
      if (!eat(T::colon)) return kFail;
      const int annotation = expression();
      if (annotation < 0) return kFail;
      int d = std::max(target, annotation);
      if (at(T::equal)) {
        const std::size_t m = pos_;
        ++pos_;
        const int value = annotated_rhs();
        if (value < 0) pos_ = m;
        else d = std::max(d, value);
      }
      return d + 1;  // AnnAssign
    };
    // NAME ':' expression ['=' annotated_rhs]
    if (at(T::name) && peek(1) == T::colon) {
      ++pos_;
      const int d = annotated(1);
      if (d >= 0 || stopped_) return d;
      pos_ = mark;
    }
    // ('(' single_target ')' | single_subscript_attribute_target) ':' expression ['=' annotated_rhs]; the
    // group commits to its first alternative once that matches.
    {
      int target = kFail;
      if (eat(T::lpar)) {
        target = single_target();
        if (target < 0 || !eat(T::rpar)) target = kFail;
      }
      if (target < 0) {
        pos_ = mark;
        target = single_subscript_attribute_target();
      }
      if (target >= 0) {
        const int d = annotated(target);
        if (d >= 0 || stopped_) return d;
      }
      if (stopped_) return kFail;
      pos_ = mark;
    }
    // (star_targets '=')+ (yield_expr | star_expressions) !'='
    {
      int deepest = 0, n = 0;
      for (;;) {
        const std::size_t m = pos_;
        const int t = star_targets();
        if (t >= 0 && eat(T::equal)) {
          deepest = std::max(deepest, t);
          ++n;
          continue;
        }
        pos_ = m;
        break;
      }
      if (n > 0) {
        const int value = at(T::kw_yield) ? yield_expr() : star_expressions();
        if (value >= 0 && !at(T::equal)) return std::max(deepest, value) + 1;  // Assign
      }
      if (stopped_) return kFail;
      pos_ = mark;
    }
    // single_target augassign ~ (yield_expr | star_expressions)
    const int target = single_target();
    if (target >= 0 && is_augassign(type())) {
      ++pos_;
      const int value = at(T::kw_yield) ? yield_expr() : star_expressions();
      return value < 0 ? kFail : std::max(target, value) + 1;  // AugAssign
    }
    pos_ = mark;
    return kFail;
  }

  int annotated_rhs() { return at(T::kw_yield) ? yield_expr() : star_expressions(); }

  int dotted_name() {
    if (!eat(T::name)) return kFail;
    for (;;) {
      const std::size_t m = pos_;
      if (!eat(T::dot) || !eat(T::name)) {
        pos_ = m;
        return 1;
      }
    }
  }

  // NAME ['as' NAME]; `dotted` allows a dotted name first.
  bool alias(bool dotted) {
    if (dotted ? dotted_name() < 0 : !eat(T::name)) return false;
    if (at(T::kw_as)) {
      const std::size_t m = pos_;
      ++pos_;
      if (!eat(T::name)) pos_ = m;
    }
    return true;
  }

  int import_name() {
    ++pos_;
    if (!alias(true)) return kFail;
    for (;;) {
      const std::size_t m = pos_;
      if (!eat(T::comma) || !alias(true)) {
        pos_ = m;
        return 2;  // Import, alias
      }
    }
  }

  int import_from() {
    ++pos_;
    int dots = 0;
    while (at(T::dot) || at(T::ellipsis)) {
      ++pos_;
      ++dots;
    }
    if (at(T::name)) {
      if (dotted_name() < 0) return kFail;
    } else if (dots == 0) {
      return kFail;
    }
    if (!eat(T::kw_import)) return kFail;
    if (eat(T::star)) return 2;
    const bool paren = eat(T::lpar);
    if (!alias(false)) return kFail;
    for (;;) {
      const std::size_t m = pos_;
      if (!eat(T::comma) || !alias(false)) {
        pos_ = m;
        break;
      }
    }
    if (paren) {
      eat(T::comma);
      return eat(T::rpar) ? 2 : kFail;
    }
    return at(T::comma) ? kFail : 2;
  }

  int block() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    if (!at(T::newline)) return simple_stmts();
    ++pos_;
    if (!eat(T::indent)) return kFail;
    int deepest = 0;
    do {
      const int d = statement();
      if (d < 0) return kFail;
      deepest = std::max(deepest, d);
    } while (!at(T::dedent));
    ++pos_;
    return deepest;
  }

  // decorators? (function_def_raw | class_def_raw)
  int definition() {
    Scope s(*this, 2);
    if (s.stopped()) return kFail;
    int decorators = 0;
    while (eat(T::at)) {
      const int d = named_expression();
      if (d < 0 || !eat(T::newline)) return kFail;
      decorators = std::max(decorators, d);
    }
    if (eat(T::kw_class)) {
      if (!eat(T::name)) return kFail;
      int bases = 0;
      if (at(T::lpar)) {
        bases = call_arguments(false);
        if (bases < 0) return kFail;
      }
      if (!eat(T::colon)) return kFail;
      const int body = block();
      return body < 0 ? kFail : max3(decorators, bases, body) + 1;
    }
    eat(T::kw_async);
    if (!eat(T::kw_def) || !eat(T::name) || !eat(T::lpar)) return kFail;
    const int args = parameters(false);
    if (args < 0 || !eat(T::rpar)) return kFail;
    int returns = 0;
    if (eat(T::rarrow)) {
      returns = expression();
      if (returns < 0) return kFail;
    }
    if (!eat(T::colon)) return kFail;
    const int body = block();
    return body < 0 ? kFail : std::max(max3(decorators, args, returns), body) + 1;
  }

  // Parameters of a def (up to ')') or a lambda (up to ':'); the `arguments` node's depth.
  int parameters(bool lambda) {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    const T close = lambda ? T::colon : T::rpar;
    if (at(close)) return 1;
    int deepest = 0, before_slash = 0;
    bool slash = false, star = false, kwds = false, seen_default = false, bare_star = false;
    auto param = [&](bool star_annotation) -> bool {  // NAME [':' annotation]
      if (!eat(T::name)) return false;
      int d = 1;
      if (!lambda && at(T::colon)) {
        ++pos_;
        const int a = star_annotation ? star_expression() : expression();
        if (a < 0) return false;
        d = a + 1;
      }
      deepest = std::max(deepest, d);
      return true;
    };
    for (;;) {
      if (at(T::slash)) {
        if (slash || star || kwds || before_slash == 0) return kFail;
        ++pos_;
        slash = true;
      } else if (at(T::star)) {
        if (star || kwds) return kFail;
        ++pos_;
        star = true;
        if (at(T::comma)) bare_star = true;
        else if (!param(true)) return kFail;
      } else if (at(T::doublestar)) {
        if (kwds || bare_star) return kFail;
        ++pos_;
        if (!param(false)) return kFail;
        kwds = true;
      } else if (at(T::name)) {
        if (kwds || !param(false)) return kFail;
        bool has_default = false;
        if (eat(T::equal)) {
          const int d = expression();
          if (d < 0) return kFail;
          deepest = std::max(deepest, d);
          has_default = true;
        }
        if (!star) {
          if (has_default) seen_default = true;
          else if (seen_default) return kFail;  // a parameter without default after one with
          if (!slash) ++before_slash;
        }
        bare_star = false;
      } else {
        return kFail;
      }
      if (at(close)) break;
      if (!eat(T::comma)) return kFail;
      if (at(close)) break;
    }
    return bare_star ? kFail : deepest + 1;
  }

  int if_stmt(T keyword) {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    if (!eat(keyword)) return kFail;
    const int test = named_expression();
    if (test < 0 || !eat(T::colon)) return kFail;
    const int body = block();
    if (body < 0) return kFail;
    int orelse = 0;
    if (at(T::kw_elif)) orelse = if_stmt(T::kw_elif);
    else if (at(T::kw_else)) orelse = else_block();
    return orelse < 0 ? kFail : max3(test, body, orelse) + 1;
  }

  int else_block() {
    ++pos_;
    if (!eat(T::colon)) return kFail;
    return block();
  }

  int while_stmt() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    ++pos_;
    const int test = named_expression();
    if (test < 0 || !eat(T::colon)) return kFail;
    const int body = block();
    if (body < 0) return kFail;
    const int orelse = at(T::kw_else) ? else_block() : 0;
    return orelse < 0 ? kFail : max3(test, body, orelse) + 1;
  }

  int for_stmt() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    eat(T::kw_async);
    ++pos_;
    const int target = star_targets();
    if (target < 0 || !eat(T::kw_in)) return kFail;
    const int iter = star_expressions();
    if (iter < 0 || !eat(T::colon)) return kFail;
    const int body = block();
    if (body < 0) return kFail;
    const int orelse = at(T::kw_else) ? else_block() : 0;
    return orelse < 0 ? kFail : std::max(max3(target, iter, body), orelse) + 1;
  }

  // expression ['as' star_target &(',' | ')' | ':')]; the withitem's depth.
  int with_item() {
    const int e = expression();
    if (e < 0) return kFail;
    if (at(T::kw_as)) {
      const std::size_t m = pos_;
      ++pos_;
      const int t = star_target();
      if (t >= 0 && (at(T::comma) || at(T::rpar) || at(T::colon))) return std::max(e, t) + 1;
      pos_ = m;
    }
    return e + 1;
  }

  int with_items() {
    int deepest = with_item();
    if (deepest < 0) return kFail;
    for (;;) {
      const std::size_t m = pos_;
      if (!eat(T::comma)) break;
      const int d = with_item();
      if (d < 0) {
        pos_ = m;
        break;
      }
      deepest = std::max(deepest, d);
    }
    return deepest;
  }

  int with_stmt() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    eat(T::kw_async);
    ++pos_;
    const std::size_t after = pos_;
    if (eat(T::lpar)) {  // 'with' '(' ','.with_item+ ','? ')' ':' block
      const int items = with_items();
      if (items >= 0) {
        eat(T::comma);
        if (eat(T::rpar) && eat(T::colon)) {
          const int body = block();
          return body < 0 ? kFail : std::max(items, body) + 1;
        }
      }
      if (stopped_) return kFail;
      pos_ = after;
    }
    const int items = with_items();
    if (items < 0 || !eat(T::colon)) return kFail;
    const int body = block();
    return body < 0 ? kFail : std::max(items, body) + 1;
  }

  int try_stmt() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    ++pos_;
    if (!eat(T::colon)) return kFail;
    int deepest = block();
    if (deepest < 0) return kFail;
    if (!at(T::kw_finally)) {
      if (!at(T::kw_except)) return kFail;
      const bool star = peek(1) == T::star;
      while (at(T::kw_except) && (peek(1) == T::star) == star) {
        const std::size_t m = pos_;
        ++pos_;
        int handler = 0;
        if (star) ++pos_;
        if (star || !at(T::colon)) {
          handler = expression();
          if (handler < 0) return kFail;
          if (at(T::kw_as)) {
            const std::size_t a = pos_;
            ++pos_;
            if (!eat(T::name)) pos_ = a;
          }
        }
        if (!eat(T::colon)) {
          pos_ = m;
          return kFail;
        }
        const int body = block();
        if (body < 0) return kFail;
        deepest = std::max(deepest, std::max(handler, body) + 1);  // ExceptHandler
      }
      if (at(T::kw_else)) {
        const int orelse = else_block();
        if (orelse < 0) return kFail;
        deepest = std::max(deepest, orelse);
      }
    }
    if (at(T::kw_finally)) {
      ++pos_;
      if (!eat(T::colon)) return kFail;
      const int final_body = block();
      if (final_body < 0) return kFail;
      deepest = std::max(deepest, final_body);
    }
    return deepest + 1;
  }

  // ---------------------------------------------------------------- match statement

  int match_stmt() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    const std::size_t mark = pos_;
    ++pos_;
    // subject_expr: star_named_expression ',' star_named_expressions? | named_expression
    int subject = kFail;
    {
      const std::size_t m = pos_;
      const int first = star_named_expression();
      if (first >= 0 && eat(T::comma)) {
        subject = std::max(first, optional([&] { return star_named_expressions(); }, 0)) + 1;
      } else {
        if (stopped_) return kFail;
        pos_ = m;
        subject = named_expression();
      }
    }
    if (subject < 0 || !eat(T::colon) || !eat(T::newline) || !eat(T::indent)) {
      if (stopped_) return kFail;
      pos_ = mark;
      return kNotMatchStatement;
    }
    int deepest = subject;
    do {
      // "case" patterns guard? ':' block
      if (!soft(kSoftCase)) return kFail;
      ++pos_;
      int d = patterns();
      if (d < 0) return kFail;
      if (eat(T::kw_if)) {
        const int guard = named_expression();
        if (guard < 0) return kFail;
        d = std::max(d, guard);
      }
      if (!eat(T::colon)) return kFail;
      const int body = block();
      if (body < 0) return kFail;
      deepest = std::max(deepest, std::max(d, body) + 1);  // match_case
    } while (!at(T::dedent));
    ++pos_;
    return deepest + 1;
  }

  int patterns() {
    const std::size_t mark = pos_;
    const int first = maybe_star_pattern();
    if (first >= 0 && eat(T::comma)) {  // open_sequence_pattern
      return std::max(first, optional([&] { return maybe_sequence_pattern(); }, 0)) + 1;
    }
    if (stopped_) return kFail;
    pos_ = mark;
    return pattern();
  }

  // ','.maybe_star_pattern+ ','?
  int maybe_sequence_pattern() {
    int deepest = maybe_star_pattern();
    if (deepest < 0) return kFail;
    while (at(T::comma)) {
      const std::size_t m = pos_;
      ++pos_;
      const int d = maybe_star_pattern();
      if (d < 0) {
        pos_ = m + 1;  // the trailing comma
        break;
      }
      deepest = std::max(deepest, d);
    }
    return deepest;
  }

  int maybe_star_pattern() {
    if (at(T::star)) {  // '*' (pattern_capture_target | "_")
      ++pos_;
      if (soft(kSoftUnderscore)) {
        ++pos_;
        return 1;
      }
      return capture_target() ? 1 : kFail;
    }
    return pattern();
  }

  bool capture_target() {  // !"_" NAME !('.' | '(' | '=')
    if (!at(T::name) || soft(kSoftUnderscore)) return false;
    const T next = peek(1);
    if (next == T::dot || next == T::lpar || next == T::equal) return false;
    ++pos_;
    return true;
  }

  int pattern() {
    Scope s(*this, 2);
    if (s.stopped()) return kFail;
    int deepest = closed_pattern();  // or_pattern: '|'.closed_pattern+
    if (deepest < 0) return kFail;
    bool alternatives = false;
    while (at(T::vbar)) {
      const std::size_t m = pos_;
      ++pos_;
      const int d = closed_pattern();
      if (d < 0) {
        pos_ = m;
        break;
      }
      deepest = std::max(deepest, d);
      alternatives = true;
    }
    if (alternatives) ++deepest;  // MatchOr
    if (at(T::kw_as)) {  // as_pattern
      const std::size_t m = pos_;
      ++pos_;
      if (capture_target()) return deepest + 1;
      pos_ = m;
    }
    return deepest;
  }

  // signed_number !('+' | '-') | complex_number, or -1; a complex literal whose parts are not real + imaginary
  // is an error right away, as CPython's parser action raises it.
  int number_literal() {
    const bool negative = eat(T::minus);
    if (!at(T::number)) return kFail;
    const Token& first = tokens_[pos_++];
    if (!at(T::plus) && !at(T::minus)) return negative ? 3 : 2;  // MatchValue(UnaryOp(Constant))
    if (first.flags & kImaginary) {
      stop("real number required in complex literal", false);
      return kFail;
    }
    ++pos_;
    if (!at(T::number)) return kFail;
    if (!(tokens_[pos_].flags & kImaginary)) {
      stop("imaginary number required in complex literal", false);
      return kFail;
    }
    ++pos_;
    return negative ? 4 : 3;  // MatchValue(BinOp(UnaryOp(Constant), Constant))
  }

  int name_or_attr() {
    if (!eat(T::name)) return kFail;
    int d = 1;
    while (at(T::dot) && peek(1) == T::name) {
      pos_ += 2;
      ++d;
    }
    return d;
  }

  int closed_pattern() {
    return memo(m_closed_pattern, [&]() -> int {
      Scope s(*this, 1);
      if (s.stopped()) return kFail;
      const std::size_t mark = pos_;
      switch (type()) {
        case T::number: case T::minus: return number_literal();
        case T::string: ++pos_; while (at(T::string)) ++pos_; return string_depth_[mark] + 1;
        case T::kw_none: case T::kw_true: case T::kw_false: ++pos_; return 1;
        case T::lpar: {
          ++pos_;
          const int group = pattern();  // group_pattern: '(' pattern ')'
          if (group >= 0 && eat(T::rpar)) return group;
          if (stopped_) return kFail;
          pos_ = mark + 1;  // sequence_pattern: '(' open_sequence_pattern? ')'
          int d = 0;
          if (!at(T::rpar)) {
            const std::size_t m = pos_;
            const int first = maybe_star_pattern();
            if (first >= 0 && eat(T::comma)) d = std::max(first, optional([&] { return maybe_sequence_pattern(); }, 0));
            else pos_ = m;
          }
          return eat(T::rpar) ? d + 1 : kFail;
        }
        case T::lsqb: {  // '[' maybe_sequence_pattern? ']'
          ++pos_;
          const int d = optional([&] { return maybe_sequence_pattern(); }, 0);
          return eat(T::rsqb) ? d + 1 : kFail;
        }
        case T::lbrace: return mapping_pattern();
        case T::name: break;
        default: return kFail;
      }
      if (capture_target()) return 1;
      if (soft(kSoftUnderscore)) {  // wildcard_pattern: "_", whatever follows
        ++pos_;
        return 1;
      }
      const int attr = name_or_attr();
      if (attr < 0) return kFail;
      if (attr > 1 && !(at(T::dot) || at(T::lpar) || at(T::equal))) return attr + 1;  // value_pattern
      if (!eat(T::lpar)) return kFail;  // class_pattern: name_or_attr '(' ... ')'
      int deepest = attr;
      bool keywords = false;
      while (!eat(T::rpar)) {
        if (at(T::name) && peek(1) == T::equal) {
          pos_ += 2;
          keywords = true;
        } else if (keywords) {
          return kFail;
        }
        const int d = pattern();
        if (d < 0) return kFail;
        deepest = std::max(deepest, d);
        if (!eat(T::comma) && !at(T::rpar)) return kFail;
      }
      return deepest + 1;
    });
  }

  int mapping_pattern() {
    ++pos_;
    if (eat(T::rbrace)) return 1;
    int deepest = 0;
    for (;;) {
      if (eat(T::doublestar)) {  // double_star_pattern ','? '}'
        if (!capture_target()) return kFail;
        eat(T::comma);
        return eat(T::rbrace) ? deepest + 1 : kFail;
      }
      // key_value_pattern: (literal_expr | attr) ':' pattern
      int key = kFail;
      switch (type()) {
        case T::number: case T::minus: key = number_literal(); break;
        case T::string: key = string_depth_[pos_]; while (at(T::string)) ++pos_; break;
        case T::kw_none: case T::kw_true: case T::kw_false: ++pos_; key = 1; break;
        case T::name: key = name_or_attr(); if (key == 1) key = kFail; break;
        default: break;
      }
      if (key < 0 || !eat(T::colon)) return kFail;
      const int value = pattern();
      if (value < 0) return kFail;
      deepest = std::max(deepest, std::max(key, value));
      if (!eat(T::comma)) return eat(T::rbrace) ? deepest + 1 : kFail;
      if (eat(T::rbrace)) return deepest + 1;
    }
  }

  // ---------------------------------------------------------------- expressions

  int star_expressions() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    int deepest = star_expression();
    if (deepest < 0) return kFail;
    bool tuple = false;
    while (at(T::comma)) {
      ++pos_;
      tuple = true;
      const std::size_t m = pos_;
      const int d = star_expression();
      if (d < 0) {
        pos_ = m;
        break;
      }
      deepest = std::max(deepest, d);
    }
    return tuple ? deepest + 1 : deepest;
  }

  int star_expression() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    if (eat(T::star)) {
      const int d = bitwise_or();
      return d < 0 ? kFail : d + 1;  // Starred
    }
    return expression();
  }

  int star_named_expressions() {
    int deepest = star_named_expression();
    if (deepest < 0) return kFail;
    while (at(T::comma)) {
      ++pos_;
      const std::size_t m = pos_;
      const int d = star_named_expression();
      if (d < 0) {
        pos_ = m;
        break;
      }
      deepest = std::max(deepest, d);
    }
    return deepest;
  }

  int star_named_expression() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    if (eat(T::star)) {
      const int d = bitwise_or();
      return d < 0 ? kFail : d + 1;
    }
    return named_expression();
  }

  // assignment_expression | expression !':='
  int named_expression() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    if (at(T::name) && peek(1) == T::colonequal) {
      pos_ += 2;
      const int value = expression();
      return value < 0 ? kFail : value + 1;  // NamedExpr
    }
    const int d = expression();
    return d < 0 || at(T::colonequal) ? kFail : d;
  }

  int expression() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    if (at(T::kw_lambda)) return lambdef();
    const int body = disjunction();
    if (body < 0 || !at(T::kw_if)) return body;
    const std::size_t mark = pos_;
    ++pos_;
    const int test = disjunction();
    if (test >= 0 && eat(T::kw_else)) {
      const int orelse = expression();
      if (orelse >= 0) return max3(body, test, orelse) + 1;  // IfExp
    }
    pos_ = mark;
    return body;
  }

  int lambdef() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    ++pos_;
    const int args = parameters(true);
    if (args < 0 || !eat(T::colon)) return kFail;
    const int body = expression();
    return body < 0 ? kFail : std::max(args, body) + 1;
  }

  int yield_expr() {
    ++pos_;
    if (eat(T::kw_from)) {
      const int d = expression();
      return d < 0 ? kFail : d + 1;
    }
    return optional([&] { return star_expressions(); }, 0) + 1;
  }

  // Boolean operators: one BoolOp node for a run of the same operator.
  template <int (Parser::*Operand)()>
  int bool_op(T op) {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    int deepest = (this->*Operand)();
    if (deepest < 0 || !at(op)) return deepest;
    bool any = false;
    while (at(op)) {
      const std::size_t m = pos_;
      ++pos_;
      const int d = (this->*Operand)();
      if (d < 0) {
        pos_ = m;
        break;
      }
      deepest = std::max(deepest, d);
      any = true;
    }
    return any ? deepest + 1 : deepest;
  }
  int disjunction() { return bool_op<&Parser::conjunction>(T::kw_or); }
  int conjunction() { return bool_op<&Parser::inversion>(T::kw_and); }

  int inversion() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    if (eat(T::kw_not)) {
      const int d = inversion();
      return d < 0 ? kFail : d + 1;
    }
    return comparison();
  }

  int comparison() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    int deepest = bitwise_or();
    if (deepest < 0) return kFail;
    bool any = false;
    for (;;) {
      const std::size_t m = pos_;
      const T t = type();
      if (is_comparison(t)) ++pos_;
      else if (t == T::kw_not && peek(1) == T::kw_in) pos_ += 2;
      else if (t == T::kw_is) pos_ += peek(1) == T::kw_not ? 2 : 1;
      else break;
      int d = bitwise_or();
      if (d < 0 && t == T::kw_is && pos_ == m + 2) {  // "is not" failed: try "is" alone
        pos_ = m + 1;
        d = bitwise_or();
      }
      if (d < 0) {
        pos_ = m;
        break;
      }
      deepest = std::max(deepest, d);
      any = true;
    }
    return any ? deepest + 1 : deepest;  // Compare
  }

  // Left-associative binary operators: each one adds a BinOp above the left operand.
  template <int (Parser::*Operand)(), bool (*IsOp)(T)>
  int binary() {
    Scope s(*this, 2);  // pegen enters the rule and its left-recursive body
    if (s.stopped()) return kFail;
    int d = (this->*Operand)();
    if (d < 0) return kFail;
    while (IsOp(type())) {
      const std::size_t m = pos_;
      ++pos_;
      const int right = (this->*Operand)();
      if (right < 0) {
        pos_ = m;
        break;
      }
      d = std::max(d, right) + 1;
    }
    return d;
  }
  static bool is_bitor(T t) { return t == T::vbar; }
  static bool is_bitxor(T t) { return t == T::circumflex; }
  static bool is_bitand(T t) { return t == T::amper; }
  static bool is_shift(T t) { return t == T::leftshift || t == T::rightshift; }
  static bool is_sum(T t) { return t == T::plus || t == T::minus; }
  static bool is_term(T t) {
    return t == T::star || t == T::slash || t == T::doubleslash || t == T::percent || t == T::at;
  }
  int bitwise_or() { return binary<&Parser::bitwise_xor, is_bitor>(); }
  int bitwise_xor() { return binary<&Parser::bitwise_and, is_bitxor>(); }
  int bitwise_and() { return binary<&Parser::shift_expr, is_bitand>(); }
  int shift_expr() { return binary<&Parser::sum, is_shift>(); }
  int sum() { return binary<&Parser::term, is_sum>(); }
  int term() { return binary<&Parser::factor, is_term>(); }

  int factor() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    if (at(T::plus) || at(T::minus) || at(T::tilde)) {
      ++pos_;
      const int d = factor();
      return d < 0 ? kFail : d + 1;
    }
    return power();
  }

  int power() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    const int base = await_primary();
    if (base < 0 || !at(T::doublestar)) return base;
    const std::size_t m = pos_;
    ++pos_;
    const int exponent = factor();
    if (exponent < 0) {
      pos_ = m;
      return base;
    }
    return std::max(base, exponent) + 1;
  }

  int await_primary() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    if (eat(T::kw_await)) {
      const int d = primary();
      return d < 0 ? kFail : d + 1;
    }
    return primary();
  }

  int primary() {
    Scope s(*this, 2);
    if (s.stopped()) return kFail;
    int d = atom();
    if (d < 0) return kFail;
    for (;;) {
      const std::size_t m = pos_;
      if (eat(T::dot)) {
        if (eat(T::name)) {
          ++d;  // Attribute
          continue;
        }
      } else if (eat(T::lsqb)) {
        const int index = slices();
        if (index >= 0 && eat(T::rsqb)) {
          d = std::max(d, index) + 1;  // Subscript
          continue;
        }
      } else if (at(T::lpar)) {
        const int args = call_arguments(true);
        if (args >= 0) {
          d = std::max(d, args) + 1;  // Call
          continue;
        }
      }
      pos_ = m;
      return d;
    }
  }

  // At '(': genexp (when `genexp`) | '(' [arguments] ')'. The deepest argument (keywords and Starred
  // counted), or the GeneratorExp; 0 for no arguments.
  int call_arguments(bool genexp) {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    ++pos_;
    if (eat(T::rpar)) return 0;
    int deepest = 0, phase = 0;  // 0: positional and *; 1: after a keyword (keywords and *); 2: after **
    bool first = true;
    for (;;) {
      if (at(T::name) && peek(1) == T::equal) {
        pos_ += 2;
        const int d = expression();
        if (d < 0) return kFail;
        deepest = std::max(deepest, d + 1);  // keyword
        phase = std::max(phase, 1);
      } else if (at(T::star) || at(T::doublestar)) {
        const bool double_star = at(T::doublestar);
        if (!double_star && phase == 2) return kFail;
        ++pos_;
        const int d = expression();
        if (d < 0) return kFail;
        deepest = std::max(deepest, d + 1);  // Starred or keyword
        if (double_star) phase = 2;
      } else {
        if (phase != 0) return kFail;
        const int d = named_expression();
        if (d < 0) return kFail;
        if (first && genexp && (at(T::kw_for) || at(T::kw_async))) {
          const int clauses = for_if_clauses();
          return clauses < 0 || !eat(T::rpar) ? kFail : std::max(d, clauses) + 1;  // GeneratorExp
        }
        if (at(T::equal)) return kFail;
        deepest = std::max(deepest, d);
      }
      first = false;
      if (eat(T::rpar)) return deepest;
      if (!eat(T::comma)) return kFail;
      if (eat(T::rpar)) return deepest;
    }
  }

  // slice !',' | ','.(slice | starred_expression)+ [','] (a Tuple)
  int slices() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    int deepest = 0;
    bool tuple = false;
    for (;;) {
      int d;
      if (eat(T::star)) {
        d = expression();
        if (d >= 0) ++d;  // Starred
        tuple = true;     // a starred element makes a Tuple even alone
      } else {
        d = slice();
      }
      if (d < 0) return kFail;
      deepest = std::max(deepest, d);
      if (!at(T::comma)) break;
      ++pos_;
      tuple = true;
      if (at(T::rsqb)) break;
    }
    return tuple ? deepest + 1 : deepest;
  }

  // [expression] ':' [expression] [':' [expression]] | named_expression
  int slice() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    if (at(T::name) && peek(1) == T::colonequal) return named_expression();
    int lower = 0;
    if (!at(T::colon)) {
      lower = expression();  // also the named_expression when no ':' follows (no ':=' can: see above)
      if (lower < 0 || !at(T::colon)) return lower < 0 || at(T::colonequal) ? kFail : lower;
    }
    ++pos_;
    int deepest = std::max(lower, optional([&] { return expression(); }, 0));
    if (eat(T::colon)) deepest = std::max(deepest, optional([&] { return expression(); }, 0));
    return deepest + 1;  // Slice
  }

  int atom() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    switch (type()) {
      case T::name: case T::kw_true: case T::kw_false: case T::kw_none: case T::number: case T::ellipsis:
        ++pos_;
        return 1;
      case T::string: {
        const int d = string_depth_[pos_];
        while (at(T::string)) ++pos_;
        return d;
      }
      case T::lpar: return paren();
      case T::lsqb: return bracket();
      case T::lbrace: return brace();
      default: return kFail;
    }
  }

  // tuple | group | genexp (pegen enters the alternatives' group, tuple and its optional group: 3 levels)
  int paren() {
    Scope s(*this, 3);
    if (s.stopped()) return kFail;
    ++pos_;
    if (eat(T::rpar)) return 1;
    if (at(T::kw_yield)) {
      const int d = yield_expr();
      return d < 0 || !eat(T::rpar) ? kFail : d;
    }
    const bool starred = at(T::star);
    const int first = star_named_expression();
    if (first < 0) return kFail;
    if (eat(T::comma)) {
      const int rest = at(T::rpar) ? 0 : optional([&] { return star_named_expressions(); }, 0);
      return eat(T::rpar) ? std::max(first, rest) + 1 : kFail;
    }
    if (starred) return kFail;
    if (eat(T::rpar)) return first;
    return comprehension(first, T::rpar);
  }

  // list | listcomp (pegen: the alternatives' group, list, star_named_expressions and its gather: 4 levels)
  int bracket() {
    Scope s(*this, 4);
    if (s.stopped()) return kFail;
    ++pos_;
    if (eat(T::rsqb)) return 1;
    const bool starred = at(T::star);
    const int first = star_named_expression();
    if (first < 0) return kFail;
    if (!starred && (at(T::kw_for) || at(T::kw_async))) return comprehension(first, T::rsqb);
    int deepest = first;
    if (eat(T::comma) && !at(T::rsqb))
      deepest = std::max(deepest, optional([&] { return star_named_expressions(); }, 0));
    return eat(T::rsqb) ? deepest + 1 : kFail;
  }

  // dict | set | dictcomp | setcomp (pegen: the alternatives' group, dict, double_starred_kvpairs, its gather,
  // double_starred_kvpair and kvpair: 6 levels)
  int brace() {
    Scope s(*this, 6);
    if (s.stopped()) return kFail;
    ++pos_;
    if (eat(T::rbrace)) return 1;
    if (at(T::doublestar)) return dict_items(0);
    const bool starred = at(T::star);
    int first;
    if (starred || (at(T::name) && peek(1) == T::colonequal)) {
      first = star_named_expression();
    } else {
      first = expression();
      if (first >= 0 && eat(T::colon)) {
        const int value = expression();
        if (value < 0) return kFail;
        const int pair = std::max(first, value);
        if (at(T::kw_for) || at(T::kw_async)) return comprehension(pair, T::rbrace);
        if (eat(T::rbrace)) return pair + 1;
        if (!eat(T::comma)) return kFail;
        return dict_items(pair);
      }
      if (first >= 0 && at(T::colonequal)) return kFail;
    }
    if (first < 0) return kFail;
    if (!starred && (at(T::kw_for) || at(T::kw_async))) return comprehension(first, T::rbrace);
    int deepest = first;
    if (eat(T::comma) && !at(T::rbrace))
      deepest = std::max(deepest, optional([&] { return star_named_expressions(); }, 0));
    return eat(T::rbrace) ? deepest + 1 : kFail;
  }

  // The rest of a dict display: double_starred_kvpair items ('**' bitwise_or | expression ':' expression),
  // comma separated, up to '}'.
  int dict_items(int deepest) {
    for (;;) {
      if (eat(T::rbrace)) return deepest + 1;
      int d;
      if (eat(T::doublestar)) {
        d = bitwise_or();
      } else {
        const int key = expression();
        if (key < 0 || !eat(T::colon)) return kFail;
        const int value = expression();
        d = value < 0 ? kFail : std::max(key, value);
      }
      if (d < 0) return kFail;
      deepest = std::max(deepest, d);
      if (!eat(T::comma)) return eat(T::rbrace) ? deepest + 1 : kFail;
    }
  }

  // for_if_clauses and the closing bracket of a comprehension whose element has depth `element`.
  int comprehension(int element, T close) {
    const int clauses = for_if_clauses();
    return clauses < 0 || !eat(close) ? kFail : std::max(element, clauses) + 1;
  }

  // (ASYNC? 'for' star_targets 'in' ~ disjunction ('if' disjunction)*)+; the deepest comprehension node.
  int for_if_clauses() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    int deepest = 0;
    bool any = false;
    while (at(T::kw_for) || (at(T::kw_async) && peek(1) == T::kw_for)) {
      eat(T::kw_async);
      ++pos_;
      const int target = star_targets();
      if (target < 0 || !eat(T::kw_in)) return kFail;
      int d = disjunction();
      if (d < 0) return kFail;
      d = std::max(d, target);
      while (at(T::kw_if)) {
        const std::size_t m = pos_;
        ++pos_;
        const int cond = disjunction();
        if (cond < 0) {
          pos_ = m;
          break;
        }
        d = std::max(d, cond);
      }
      deepest = std::max(deepest, d + 1);  // comprehension
      any = true;
    }
    return any ? deepest : kFail;
  }

  // ---------------------------------------------------------------- targets

  int t_primary() {
    return memo(m_t_primary, [&]() -> int {
      Scope s(*this, 2);
      if (s.stopped()) return kFail;
      int d = atom();
      if (d < 0 || !t_lookahead()) return kFail;
      for (;;) {
        const std::size_t m = pos_;
        if (eat(T::dot)) {
          if (eat(T::name) && t_lookahead()) {
            ++d;
            continue;
          }
        } else if (eat(T::lsqb)) {
          const int index = slices();
          if (index >= 0 && eat(T::rsqb) && t_lookahead()) {
            d = std::max(d, index) + 1;
            continue;
          }
        } else if (at(T::lpar)) {
          const int args = call_arguments(true);
          if (args >= 0 && t_lookahead()) {
            d = std::max(d, args) + 1;
            continue;
          }
        }
        if (stopped_) return kFail;
        pos_ = m;
        return d;
      }
    });
  }

  // t_primary '.' NAME !t_lookahead | t_primary '[' slices ']' !t_lookahead
  int single_subscript_attribute_target() {
    const std::size_t mark = pos_;
    const int base = t_primary();
    if (base < 0) return kFail;
    const std::size_t after = pos_;
    if (eat(T::dot) && eat(T::name) && !t_lookahead()) return base + 1;
    pos_ = after;
    if (eat(T::lsqb)) {
      const int index = slices();
      if (index >= 0 && eat(T::rsqb) && !t_lookahead()) return std::max(base, index) + 1;
    }
    pos_ = mark;
    return kFail;
  }

  // single_subscript_attribute_target | NAME | '(' single_target ')'
  int single_target() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    const std::size_t mark = pos_;
    const int d = single_subscript_attribute_target();
    if (d >= 0) return d;
    pos_ = mark;
    if (eat(T::name)) return 1;
    if (eat(T::lpar)) {
      const int inner = single_target();
      if (inner >= 0 && eat(T::rpar)) return inner;
    }
    pos_ = mark;
    return kFail;
  }

  // star_target !',' | star_target (',' star_target)* [','] (a Tuple)
  int star_targets() {
    Scope s(*this, 1);
    if (s.stopped()) return kFail;
    int deepest = star_target();
    if (deepest < 0) return kFail;
    if (!at(T::comma)) return deepest;
    while (eat(T::comma)) {
      const std::size_t m = pos_;
      const int d = star_target();
      if (d < 0) {
        pos_ = m;
        break;
      }
      deepest = std::max(deepest, d);
    }
    return deepest + 1;
  }

  // ','.star_target+ [',']; `need_comma`: a tuple's elements (star_targets_tuple_seq) need at least one.
  int star_target_seq(bool need_comma) {
    int deepest = star_target();
    if (deepest < 0) return kFail;
    bool comma = false;
    while (eat(T::comma)) {
      comma = true;
      const std::size_t m = pos_;
      const int d = star_target();
      if (d < 0) {
        pos_ = m;
        break;
      }
      deepest = std::max(deepest, d);
    }
    return need_comma && !comma ? kFail : deepest;
  }

  // '*' (!'*' star_target) | target_with_star_atom
  int star_target() {
    return memo(m_star_target, [&]() -> int {
      Scope s(*this, 1);
      if (s.stopped()) return kFail;
      if (eat(T::star)) {
        if (at(T::star)) return kFail;
        const int d = star_target();
        return d < 0 ? kFail : d + 1;
      }
      return target_with_star_atom();
    });
  }

  int target_with_star_atom() {
    return memo(m_target_with_star_atom, [&]() -> int {
      Scope s(*this, 1);
      if (s.stopped()) return kFail;
      const int d = single_subscript_attribute_target();
      if (d >= 0) return d;
      // star_atom: NAME | '(' target_with_star_atom ')' | '(' [star_targets_tuple_seq] ')' | '[' [...] ']'
      if (eat(T::name)) return 1;
      const std::size_t mark = pos_;
      if (eat(T::lpar)) {
        const int inner = target_with_star_atom();
        if (inner >= 0 && eat(T::rpar)) return inner;
        if (stopped_) return kFail;
        pos_ = mark + 1;
        const int seq = at(T::rpar) ? 0 : optional([&] { return star_target_seq(true); }, 0);
        return eat(T::rpar) ? seq + 1 : kFail;
      }
      if (eat(T::lsqb)) {
        const int seq = at(T::rsqb) ? 0 : optional([&] { return star_target_seq(false); }, 0);
        return eat(T::rsqb) ? seq + 1 : kFail;
      }
      return kFail;
    });
  }

  int del_targets() {
    int deepest = del_target();
    if (deepest < 0) return kFail;
    while (eat(T::comma)) {
      const std::size_t m = pos_;
      const int d = del_target();
      if (d < 0) {
        pos_ = m;
        break;
      }
      deepest = std::max(deepest, d);
    }
    return deepest;
  }

  // t_primary '.' NAME !t_lookahead | t_primary '[' slices ']' !t_lookahead | del_t_atom
  int del_target() {
    return memo(m_del_target, [&]() -> int {
      Scope s(*this, 1);
      if (s.stopped()) return kFail;
      const int d = single_subscript_attribute_target();
      if (d >= 0) return d;
      if (eat(T::name)) return 1;
      const std::size_t mark = pos_;
      if (eat(T::lpar)) {
        const int inner = del_target();
        if (inner >= 0 && eat(T::rpar)) return inner;
        if (stopped_) return kFail;
        pos_ = mark + 1;
        const int seq = at(T::rpar) ? 0 : optional([&] { return del_targets(); }, 0);
        return eat(T::rpar) ? seq + 1 : kFail;
      }
      if (eat(T::lsqb)) {
        const int seq = at(T::rsqb) ? 0 : optional([&] { return del_targets(); }, 0);
        return eat(T::rsqb) ? seq + 1 : kFail;
      }
      return kFail;
    });
  }

  const std::vector<Token>& tokens_;
  const std::vector<int>& string_depth_;
  Failure& failure_;
  Budget& budget_;
  std::size_t pos_ = 0;
  mutable std::size_t reach_ = 0;  // the furthest token looked at: where the error is reported
  int level_ = 0;
  bool stopped_ = false;  // a hard error (stack overflow, budget, a parser action's error): no backtracking
  std::unordered_map<std::uint64_t, std::pair<std::size_t, int>> memo_;
  std::vector<std::uint64_t> memo_keys_;
};

}  // namespace

int parse(const std::vector<Token>& tokens, const std::vector<int>& string_depth, Start start, Failure& failure,
          Budget& budget) {
  return Parser(tokens, string_depth, failure, budget).run(start);
}

}  // namespace codescaler::python
