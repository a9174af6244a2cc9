//! What the queue needs of the database: its schema ([`MIGRATIONS`]) and the settings of
//! the sessions it runs on ([`SESSION_SETUP`]).

use diesel_migrations::{embed_migrations, EmbeddedMigrations};

/// The queue's schema: the `tasks` table, its partial indexes, the insert trigger that
/// sends wake-ups, and the SQL function `enqueue_task`. An application applies these before
/// its own migrations (both sets share diesel's migration table, each migration recorded
/// by its version).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// What every pooled session the queue runs on must be set to before its first use.
///
/// `plan_cache_mode = force_generic_plan`: the queue's statements are prepared once per
/// connection and are lookups by key or claims on partial indexes, so one plan per
/// statement is enough. Left to choose, PostgreSQL plans some of them again on every
/// execution (those whose array parameters make the generic plan's estimate look worse
/// than a custom one), which cost the server about 4 % of its CPU per task.
///
/// `enable_seqscan = off`: a plan is made once, against the table as it is then, and kept
/// until the next `ANALYZE`. Made while `tasks` is young (a fresh database, or a queue that
/// drained), it scans the whole table for each key lookup (`id = ANY($1)` on a few rows
/// looks cheaper read in full), and it goes on doing so as the table grows to thousands
/// of rows: workers that fall behind that way never catch up. None of these statements
/// means a sequential scan; where no index applies, PostgreSQL still takes one.
///
/// `jit = off`: a disabled scan taken anyway is costed at ten billion, far past
/// `jit_above_cost`, so it would be compiled (about 100 ms with inlining and optimisation)
/// on every execution; these statements run in well under a millisecond and never gain
/// from JIT.
///
/// The measurements behind each setting: `load-tests/RESULTS.md`, "Plans, connections and
/// database sessions".
pub const SESSION_SETUP: &str =
    "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; SET jit = off";
