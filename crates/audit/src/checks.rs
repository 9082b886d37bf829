//! The checks: each one catalog query over every table at once (never one per table). Every
//! query gets the same parameters and returns one row per object it checked:
//! `(object, failed, message, fix, severity override)`.
//!
//! Parameters: `$1` schemas (text[]), `$2` tenant tables (oids as int8[], the tenant table
//! included), `$3` tenant column, `$4` tenant table (oid as int8, 0 when absent), `$5` the
//! tenant table's key column, `$6` the application role, `$7` the admin roles (text[]).

use crate::Severity;

pub struct Check {
    pub id: &'static str,
    pub title: &'static str,
    pub severity: Severity,
    pub why: &'static str,
    pub sql: &'static str,
    /// For checks that need more than SQL can say: given the row's message column (then the
    /// text to analyse), whether the row really fails.
    pub refine: Option<fn(&str) -> bool>,
}

/// The tenant tables with their tenant column (the tenant table's key for the tenant table).
macro_rules! tt {
    ($rest:literal) => {
        concat!(
            "WITH tt AS (
               SELECT c.oid, n.nspname, c.relname, format('%I.%I', n.nspname, c.relname) AS qname,
                      CASE WHEN c.oid::int8 = $4 THEN $5 ELSE $3 END AS tcol,
                      c.relrowsecurity, c.relforcerowsecurity, c.relowner, c.relacl, a.attnum AS tatt
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped
                       AND a.attname = CASE WHEN c.oid::int8 = $4 THEN $5 ELSE $3 END
                WHERE c.oid::int8 = ANY($2)),
             ctx AS (SELECT $1::text[] AS schemas, $6::text AS app_role, $7::text[] AS admins,
                            CASE WHEN $4 = 0 THEN NULL ELSE $4::oid::regclass::text END AS tenant_table)
             ",
            $rest
        )
    };
}

/// A policy's expressions as text.
macro_rules! policies {
    () => {
        ",
  pol AS (
    SELECT tt.qname, tt.oid AS relid, p.polname, p.polcmd, p.polpermissive, p.polroles,
           format('%s policy %I', tt.qname, p.polname) AS object,
           coalesce(pg_get_expr(p.polqual, p.polrelid), '') AS qual,
           coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '') AS wcheck,
           p.polwithcheck IS NULL AS no_check
      FROM pg_policy p JOIN tt ON tt.oid = p.polrelid)
"
    };
}

/// Foreign keys between two tenant tables, with both tenant columns. Straight from
/// pg_constraint (joins by oid index): no join of the tenant-table CTE with itself, which the
/// planner can turn quadratic.
macro_rules! xfk {
    () => {
        ",
  xfk AS (
    SELECT k.conname, k.conkey, k.confkey, k.conrelid AS coid, k.confrelid AS poid,
           format('%I.%I', cn.nspname, cc.relname) AS cq, format('%I.%I', pn.nspname, pc.relname) AS pq,
           ca.attname::text AS ctcol, pa.attname::text AS ptcol, ca.attnum AS catt, pa.attnum AS patt
      FROM pg_constraint k
      JOIN pg_class cc ON cc.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace
      JOIN pg_class pc ON pc.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
      JOIN pg_attribute ca ON ca.attrelid = k.conrelid AND NOT ca.attisdropped
                          AND ca.attname = CASE WHEN k.conrelid::int8 = $4 THEN $5 ELSE $3 END
      JOIN pg_attribute pa ON pa.attrelid = k.confrelid AND NOT pa.attisdropped
                          AND pa.attname = CASE WHEN k.confrelid::int8 = $4 THEN $5 ELSE $3 END
     WHERE k.contype = 'f' AND k.conrelid::int8 = ANY($2) AND k.confrelid::int8 = ANY($2))
"
    };
}

pub const CHECKS: &[Check] = &[
    Check {
        id: "tenant.missing_column",
        title: "Tables that reference tenant data have the tenant column",
        severity: Severity::High,
        why: "A row without a tenant column belongs to no tenant: no policy can isolate it, and it can join tenants together.",
        sql: tt!("
            SELECT format('%I.%I', n.nspname, c.relname),
                   EXISTS (SELECT 1 FROM pg_constraint k
                            WHERE k.conrelid = c.oid AND k.contype = 'f' AND k.confrelid::int8 = ANY($2)),
                   format('references tenant data but has no %I column', $3::text),
                   format('ALTER TABLE %I.%I ADD COLUMN %I uuid NOT NULL REFERENCES %s ON DELETE CASCADE; -- then secure it like the other tenant tables',
                          n.nspname, c.relname, $3::text, (SELECT tenant_table FROM ctx)),
                   NULL::text
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') AND NOT (c.oid::int8 = ANY($2))
             ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "tenant.column_default",
        title: "No tenant column defaults to a fixed tenant",
        severity: Severity::High,
        why: "A constant default on the tenant column files every row written without a tenant under that one tenant: a forgotten column in an INSERT hands the row to someone else's clinic (and RLS' WITH CHECK passes whenever that tenant writes).",
        sql: tt!("
            SELECT tt.qname,
                   d.adbin IS NOT NULL AND d.adbin::text !~ ':funcformat 0' AND d.adbin::text !~ '\\{(VAR|SUBLINK|SQLVALUEFUNCTION|PARAM) ',
                   format('%I defaults to %s', tt.tcol, pg_get_expr(d.adbin, d.adrelid)),
                   format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT; -- or default it to the current tenant''s context', tt.qname, tt.tcol),
                   NULL::text
              FROM tt LEFT JOIN pg_attrdef d ON d.adrelid = tt.oid AND d.adnum = tt.tatt
             WHERE tt.tatt IS NOT NULL ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "tenant.nullable_column",
        title: "The tenant column is NOT NULL",
        severity: Severity::High,
        why: "A row with a NULL tenant matches no tenant's policy yet sits in a shared table: orphaned data that any bypassing path exposes.",
        sql: tt!("
            SELECT tt.qname, NOT a.attnotnull,
                   format('%I is nullable', tt.tcol),
                   format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL;', tt.qname, tt.tcol),
                   NULL::text
              FROM tt JOIN pg_attribute a ON a.attrelid = tt.oid AND a.attname = tt.tcol AND NOT a.attisdropped
             ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "fk.tenant_missing",
        title: "The tenant column references the tenant table",
        severity: Severity::High,
        why: "Without the foreign key a row can name a tenant that does not exist, and deleting a tenant leaves its data behind.",
        sql: tt!("
            SELECT tt.qname,
                   NOT EXISTS (SELECT 1 FROM pg_constraint k
                                 JOIN pg_attribute a ON a.attrelid = tt.oid AND a.attname = tt.tcol
                                WHERE k.conrelid = tt.oid AND k.contype = 'f' AND k.confrelid::int8 = $4
                                  AND k.conkey = ARRAY[a.attnum]),
                   format('%I does not reference %s', tt.tcol, (SELECT tenant_table FROM ctx)),
                   format('ALTER TABLE %s ADD FOREIGN KEY (%I) REFERENCES %s (%I) ON DELETE CASCADE;',
                          tt.qname, tt.tcol, (SELECT tenant_table FROM ctx), $5::text),
                   NULL::text
              FROM tt WHERE tt.oid::int8 <> $4
             ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "fk.tenant_not_cascade",
        title: "Deleting a tenant deletes its data (ON DELETE CASCADE)",
        severity: Severity::Medium,
        why: "Without CASCADE a tenant cannot be deleted cleanly, and the workarounds (nulling, detaching) leave data that no tenant owns.",
        sql: tt!("
            SELECT format('%s (%I)', tt.qname, k.conname), k.confdeltype <> 'c',
                   format('the tenant foreign key is ON DELETE %s',
                          CASE k.confdeltype WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT'
                               WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' ELSE 'CASCADE' END),
                   format('ALTER TABLE %s DROP CONSTRAINT %I, ADD CONSTRAINT %I FOREIGN KEY (%I) REFERENCES %s (%I) ON DELETE CASCADE;',
                          tt.qname, k.conname, k.conname, tt.tcol, (SELECT tenant_table FROM ctx), $5::text),
                   NULL::text
              FROM tt
              JOIN pg_attribute a ON a.attrelid = tt.oid AND a.attname = tt.tcol
              JOIN pg_constraint k ON k.conrelid = tt.oid AND k.contype = 'f' AND k.confrelid::int8 = $4
                                  AND k.conkey = ARRAY[a.attnum]
             WHERE tt.oid::int8 <> $4
             ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "fk.cross_tenant",
        title: "Foreign keys between tenant tables include the tenant column",
        severity: Severity::High,
        why: "A foreign key on the id alone lets a row of one tenant point at a row of another; including the tenant column makes that impossible.",
        sql: concat!(tt!(""), xfk!(), "
            SELECT format('%s (%I)', cq, conname),
                   NOT EXISTS (SELECT 1 FROM generate_subscripts(conkey, 1) i
                                WHERE conkey[i] = catt AND confkey[i] = patt),
                   format('references %s without the tenant column: a row can point into another tenant', pq),
                   format('ALTER TABLE %s DROP CONSTRAINT %I, ADD CONSTRAINT %I FOREIGN KEY (%I, %s) REFERENCES %s (%I, %s); -- needs UNIQUE (%I, %s) on %s',
                          cq, conname, conname, ctcol,
                          (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY u.o) FROM unnest(conkey) WITH ORDINALITY u(n, o)
                             JOIN pg_attribute a ON a.attrelid = coid AND a.attnum = u.n),
                          pq, ptcol,
                          (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY u.o) FROM unnest(confkey) WITH ORDINALITY u(n, o)
                             JOIN pg_attribute a ON a.attrelid = poid AND a.attnum = u.n),
                          ptcol,
                          (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY u.o) FROM unnest(confkey) WITH ORDINALITY u(n, o)
                             JOIN pg_attribute a ON a.attrelid = poid AND a.attnum = u.n),
                          pq),
                   NULL::text
              FROM xfk
             ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "rls.disabled",
        title: "Row level security is enabled",
        severity: Severity::Critical,
        why: "Without RLS the database does not isolate tenants at all: one missing WHERE in the application leaks every tenant's rows.",
        sql: tt!("
            SELECT tt.qname, NOT tt.relrowsecurity, 'row level security is disabled',
                   format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY; ALTER TABLE %s FORCE ROW LEVEL SECURITY;', tt.qname, tt.qname),
                   NULL::text
              FROM tt ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "rls.not_forced",
        title: "Row level security is forced",
        severity: Severity::High,
        why: "The table's owner bypasses RLS unless it is forced: any connection or SECURITY DEFINER function running as the owner sees every tenant.",
        sql: tt!("
            SELECT tt.qname, NOT tt.relforcerowsecurity, 'row level security is enabled but not forced',
                   format('ALTER TABLE %s FORCE ROW LEVEL SECURITY;', tt.qname), NULL::text
              FROM tt WHERE tt.relrowsecurity ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "rls.no_policy",
        title: "Tables with RLS have at least one policy",
        severity: Severity::Medium,
        why: "With RLS and no policy every query returns nothing: someone will 'fix' it with a USING (true) policy or by disabling RLS.",
        sql: tt!("
            SELECT tt.qname, NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = tt.oid),
                   'row level security is enabled but the table has no policy',
                   format('CREATE POLICY tenant_isolation ON %s USING (%I = (select <current tenant>)) WITH CHECK (%I = (select <current tenant>));',
                          tt.qname, tt.tcol, tt.tcol),
                   NULL::text
              FROM tt WHERE tt.relrowsecurity ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "rls.always_true",
        title: "No policy on tenant data is USING (true) or WITH CHECK (true)",
        severity: Severity::Critical,
        why: "A true policy is OR-ed with the others: every tenant reads (or writes) every other tenant's rows, whatever the other policies say.",
        sql: concat!(tt!(""), ",
  pol AS (
    SELECT tt.qname, format('%s policy %I', tt.qname, p.polname) AS object, p.polname,
           coalesce(pg_get_expr(p.polqual, p.polrelid), '') AS qual,
           coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '') AS wcheck
      FROM pg_policy p JOIN tt ON tt.oid = p.polrelid)
            SELECT object, btrim(qual, ' ()') = 'true' OR btrim(wcheck, ' ()') = 'true',
                   CASE WHEN btrim(qual, ' ()') = 'true' THEN 'USING (true): every row is visible to every tenant'
                        ELSE 'WITH CHECK (true): any tenant can write rows of any tenant' END,
                   format('DROP POLICY %I ON %s; -- and rely on the tenant policy', polname, qname),
                   NULL::text
              FROM pol ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "rls.user_metadata",
        title: "No policy reads user-editable metadata",
        severity: Severity::High,
        why: "user_metadata (raw_user_meta_data) is written by the user: a policy that trusts it lets a user name the tenant they read.",
        sql: concat!(tt!(""), policies!(), "
            SELECT object, (qual || wcheck) ~* '(user_metadata|raw_user_meta_data)',
                   'the policy reads user_metadata, which the user can edit',
                   format('-- read the tenant from app_metadata or a membership table instead; then: ALTER POLICY %I ON %s USING (...);', polname, qname),
                   NULL::text
              FROM pol ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "rls.unwrapped_function",
        title: "Tenant functions in policies are wrapped in (select …)",
        severity: Severity::Low,
        why: "Unwrapped, the function runs once per row instead of once per statement: large scans get slower by orders of magnitude. A helper that PostgreSQL inlines into a setting lookup (LANGUAGE sql, not SECURITY DEFINER, no SET, no FROM, no JSON, a scalar result: app.current_org_id()) is exempt: it costs no call, and Citus refuses the wrapper on distributed tables.",
        sql: concat!(tt!(""), policies!(), ",
  inlined AS (
    SELECT coalesce('\\m(' || string_agg(format('%s\\.%s', n.nspname, p.proname), '|') || ')\\(\\)', '^$') AS re
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
     WHERE n.nspname IN ('app', 'auth') AND l.lanname = 'sql' AND NOT p.prosecdef AND p.proconfig IS NULL
       AND p.provolatile <> 'v' AND p.pronargs = 0 AND p.proretset = false
       AND p.prorettype IN ('uuid'::regtype, 'text'::regtype, 'int4'::regtype, 'int8'::regtype)
       AND p.prosrc ~* '\\mcurrent_setting\\(' AND p.prosrc !~* '(\\mfrom\\M|json)'),
  expr AS (
    SELECT object, polname, qname,
           regexp_replace(qual || ' ' || wcheck, (SELECT re FROM inlined), '\\1 /* inlined */ ()', 'gi') AS text
      FROM pol)
            SELECT object, text ~* '(\\m(app|auth)\\.[a-z_0-9]+\\(|\\mcurrent_setting\\()', text,
                   format('-- wrap the call, e.g. org_id = (select app.current_org_id()); then ALTER POLICY %I ON %s ...;', polname, qname),
                   NULL::text
              FROM expr ORDER BY 1"),
        refine: Some(calls_tenant_function_per_row),
    },
    Check {
        id: "rls.membership_unfiltered",
        title: "A subquery in a policy is filtered by the current user",
        severity: Severity::Critical,
        why: "A policy such as tenant_id IN (SELECT tenant_id FROM members) without WHERE user_id = <the current user> lets every user into every tenant that has any member: the subquery answers for everyone, not for the caller.",
        sql: concat!(tt!(""), policies!(), "
            SELECT object,
                   (qual || ' ' || wcheck) ~* '\\(\\s*SELECT\\M.*\\mFROM\\M'
                   AND (qual || ' ' || wcheck) !~* '(\\mauth\\.uid\\(\\)|\\mcurrent_user\\M|\\msession_user\\M|->>\\s*''sub''|current_setting\\(''[^'']*user|current_user_id\\(\\))',
                   'a subquery of the policy reads a table without filtering it by the current user',
                   format('-- filter the subquery by the caller, e.g. WHERE m.user_id = (select auth.uid()); then ALTER POLICY %I ON %s ...;', polname, qname),
                   NULL::text
              FROM pol ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "rls.using_ignores_tenant",
        title: "Every permissive policy that reads rows compares the tenant column",
        severity: Severity::Critical,
        why: "Permissive policies are OR-ed: one whose USING never names the tenant column (USING (auth.uid() IS NOT NULL), a role check alone) shows every tenant's rows to whoever it admits. (Restrictive policies only narrow and may test anything.)",
        sql: concat!(tt!(""), policies!(), "
            SELECT pol.object,
                   pol.polpermissive AND pol.polcmd IN ('r', 'w', 'd', '*') AND pol.qual <> ''
                   AND pol.qual !~ ('\\m' || tt.tcol || '\\M'),
                   format('USING (%s) does not compare %I', pol.qual, tt.tcol),
                   format('ALTER POLICY %I ON %s USING (%I = <the current tenant> AND ...);', pol.polname, pol.qname, tt.tcol),
                   NULL::text
              FROM pol JOIN tt ON tt.oid = pol.relid ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "rls.check_ignores_tenant",
        title: "Every permissive INSERT and UPDATE check compares the tenant column",
        severity: Severity::Critical,
        why: "A WITH CHECK that never names the tenant column (WITH CHECK (auth.uid() IS NOT NULL)) lets a user write rows into any tenant, or move a row of theirs into another tenant by UPDATE.",
        sql: concat!(tt!(""), policies!(), "
            SELECT pol.object,
                   pol.polpermissive AND pol.polcmd IN ('a', 'w', '*') AND pol.wcheck <> ''
                   AND pol.wcheck !~ ('\\m' || tt.tcol || '\\M'),
                   format('WITH CHECK (%s) does not compare %I', pol.wcheck, tt.tcol),
                   format('ALTER POLICY %I ON %s WITH CHECK (%I = <the current tenant>);', pol.polname, pol.qname, tt.tcol),
                   NULL::text
              FROM pol JOIN tt ON tt.oid = pol.relid ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "rls.overlapping_permissive",
        title: "No two permissive policies overlap for the same command and role",
        severity: Severity::Medium,
        why: "Permissive policies are OR-ed: the weaker one wins, so a broad policy added later silently widens a strict one.",
        sql: concat!(tt!(""), policies!(), "
            SELECT tt.qname,
                   o.pairs IS NOT NULL,
                   'overlapping permissive policies: ' || o.pairs,
                   format('-- merge them into one policy, or make the extra ones AS RESTRICTIVE, on %s', tt.qname),
                   NULL::text
              FROM tt
              LEFT JOIN (
                SELECT a.relid, string_agg(format('%I and %I', a.polname, b.polname), ', ' ORDER BY a.polname, b.polname) AS pairs
                  FROM pol a JOIN pol b ON a.relid = b.relid AND a.polname < b.polname
                 WHERE a.polpermissive AND b.polpermissive
                   AND (a.polcmd = b.polcmd OR a.polcmd = '*' OR b.polcmd = '*')
                   AND (a.polroles && b.polroles OR 0::oid = ANY(a.polroles) OR 0::oid = ANY(b.polroles))
                 GROUP BY a.relid) o ON o.relid = tt.oid
             WHERE EXISTS (SELECT 1 FROM pol WHERE pol.relid = tt.oid)
             ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "rls.missing_with_check",
        title: "INSERT and UPDATE policies have a WITH CHECK",
        severity: Severity::Medium,
        why: "Without WITH CHECK the rows written are checked only by the USING expression, or (INSERT) not at all: rows can be moved or written into another tenant.",
        sql: concat!(tt!(""), policies!(), "
            SELECT object, no_check,
                   CASE polcmd WHEN 'a' THEN 'an INSERT policy without WITH CHECK'
                               WHEN 'w' THEN 'an UPDATE policy without WITH CHECK'
                               ELSE 'a FOR ALL policy without WITH CHECK (USING is reused for new rows)' END,
                   format('ALTER POLICY %I ON %s WITH CHECK (...); -- the same tenant condition as USING', polname, qname),
                   CASE WHEN polcmd = 'a' THEN 'high' END
              FROM pol WHERE polcmd IN ('a', 'w', '*') ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "index.tenant_leading",
        title: "Every tenant table has an index leading with the tenant column",
        severity: Severity::Medium,
        why: "Every tenant query filters on the tenant column (and so does RLS): without an index each one scans the whole table, all tenants included.",
        sql: tt!("
            SELECT tt.qname,
                   NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = tt.oid AND a.attname = tt.tcol
                                WHERE i.indrelid = tt.oid AND i.indkey[0] = a.attnum),
                   format('no index leads with %I', tt.tcol),
                   format('CREATE INDEX ON %s (%I);', tt.qname, tt.tcol),
                   NULL::text
              FROM tt ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "index.fk_unindexed",
        title: "Every foreign key has a supporting index",
        severity: Severity::Low,
        why: "Deleting or updating a referenced row (a tenant included, by cascade) scans the referencing table once per row without an index.",
        sql: tt!("
            SELECT format('%I.%I (%I)', n.nspname, c.relname, k.conname),
                   NOT EXISTS (
                     SELECT 1 FROM pg_index i, LATERAL (SELECT i.indkey::int2[] AS cols) x
                      WHERE i.indrelid = c.oid
                        AND cardinality(x.cols) >= cardinality(k.conkey)
                        AND x.cols[array_lower(x.cols, 1):array_lower(x.cols, 1) + cardinality(k.conkey) - 1] @> k.conkey
                        AND x.cols[array_lower(x.cols, 1):array_lower(x.cols, 1) + cardinality(k.conkey) - 1] <@ k.conkey),
                   'the foreign key has no index on its columns',
                   format('CREATE INDEX ON %I.%I (%s);', n.nspname, c.relname,
                          (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY u.o) FROM unnest(k.conkey) WITH ORDINALITY u(n, o)
                             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = u.n)),
                   NULL::text
              FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE k.contype = 'f' AND n.nspname = ANY($1) AND c.relkind IN ('r', 'p')
             ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "bypass.view_definer",
        title: "Views run with the caller's rights (security_invoker)",
        severity: Severity::High,
        why: "A view runs as its owner unless security_invoker is set: RLS of the owner (usually unforced or bypassed) applies, not the caller's, so the view shows every tenant. (A view that reads no tenant table, such as the metadata views Citus adds, shows no tenant's rows.)",
        sql: tt!("
            SELECT format('%I.%I', n.nspname, c.relname),
                   NOT EXISTS (SELECT 1 FROM unnest(coalesce(c.reloptions, '{}')) o
                                WHERE lower(o) IN ('security_invoker=true', 'security_invoker=on', 'security_invoker=1', 'security_invoker=yes'))
                   AND EXISTS (SELECT 1 FROM pg_rewrite r
                                 JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                                WHERE r.ev_class = c.oid AND d.refclassid = 'pg_class'::regclass
                                  AND d.refobjid::int8 = ANY($2)),
                   'the view runs with its owner''s rights (no security_invoker)',
                   format('ALTER VIEW %I.%I SET (security_invoker = true);', n.nspname, c.relname),
                   NULL::text
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY($1) AND c.relkind = 'v'
             ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "bypass.definer_search_path",
        title: "SECURITY DEFINER functions have a fixed search_path",
        severity: Severity::High,
        why: "A SECURITY DEFINER function resolves names through the caller's search_path: a caller can plant an object it calls and run code with the owner's rights.",
        sql: tt!("
            SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
                   NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) s WHERE s LIKE 'search_path=%'),
                   'SECURITY DEFINER without SET search_path',
                   format('ALTER FUNCTION %I.%I(%s) SET search_path = pg_catalog, pg_temp;',
                          n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
                   NULL::text
              FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE p.prosecdef
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                                  AND d.objid = p.oid AND d.deptype = 'e')
             ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "bypass.definer_tenant_param",
        title: "No SECURITY DEFINER function that takes a tenant id is executable by PUBLIC, anon or authenticated",
        severity: Severity::High,
        why: "A SECURITY DEFINER function runs with its owner's rights, usually past RLS: when it takes the tenant as a parameter and any role (PUBLIC, Supabase's anon or authenticated) may call it, the caller names the tenant whose rows it reads or writes.",
        sql: tt!("
            SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
                   EXISTS (SELECT 1 FROM unnest(coalesce(p.proargnames, '{}')) a(name)
                            WHERE a.name ~* ('^(p_|_|in_)?(' || regexp_replace($3, '_id$', '') || '|tenant|org|organization|clinic)(_id)?$'))
                   AND (p.proacl IS NULL
                        OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) x WHERE x.grantee = 0 AND x.privilege_type = 'EXECUTE')
                        OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname IN ('anon', 'authenticated')
                                      AND has_function_privilege(r.oid, p.oid, 'EXECUTE'))),
                   'SECURITY DEFINER, takes a tenant id, and PUBLIC, anon or authenticated may execute it',
                   format('REVOKE EXECUTE ON FUNCTION %I.%I(%s) FROM PUBLIC; -- and from anon, authenticated; take the tenant from the caller''s context inside',
                          n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
                   NULL::text
              FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE p.prosecdef
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                                  AND d.objid = p.oid AND d.deptype = 'e')
             ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "bypass.matview",
        title: "No materialized view of tenant data",
        severity: Severity::High,
        why: "A materialized view has no row level security: whoever can select from it reads the rows of every tenant it stored.",
        sql: tt!("
            SELECT format('%I.%I', n.nspname, c.relname),
                   EXISTS (SELECT 1 FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                            WHERE r.ev_class = c.oid AND d.refobjid::int8 = ANY($2)),
                   'a materialized view of tenant data (no RLS applies to it)',
                   format('DROP MATERIALIZED VIEW %I.%I; -- or REVOKE ALL ON %I.%I FROM PUBLIC and every application role',
                          n.nspname, c.relname, n.nspname, c.relname),
                   NULL::text
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY($1) AND c.relkind = 'm'
             ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "roles.bypass_rls",
        title: "Only the admin logs in with SUPERUSER or BYPASSRLS",
        severity: Severity::Critical,
        why: "A login role with SUPERUSER or BYPASSRLS ignores every policy: its credentials read every tenant.",
        sql: tt!("
            SELECT format('role %I', r.rolname), r.rolsuper OR r.rolbypassrls,
                   format('login role with %s', concat_ws(' and ', CASE WHEN r.rolsuper THEN 'SUPERUSER' END,
                                                               CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END)),
                   format('ALTER ROLE %I NOSUPERUSER NOBYPASSRLS;', r.rolname),
                   NULL::text
              FROM pg_roles r
             WHERE r.rolcanlogin AND NOT (r.rolname = ANY($7))
             ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "roles.app_owns_tables",
        title: "Tenant tables are not owned by a login role",
        severity: Severity::High,
        why: "The owner bypasses unforced RLS and can disable or rewrite policies: the role the application logs in as must not own tenant tables.",
        sql: tt!("
            SELECT tt.qname, r.rolname = $6 OR (r.rolcanlogin AND NOT (r.rolname = ANY($7))),
                   format('owned by %I, a role that logs in', r.rolname),
                   format('ALTER TABLE %s OWNER TO <a NOLOGIN owner role>;', tt.qname),
                   NULL::text
              FROM tt JOIN pg_roles r ON r.oid = tt.relowner ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "grants.public",
        title: "No privilege on tenant tables is granted to PUBLIC",
        severity: Severity::High,
        why: "PUBLIC is every role, present and future: a grant to it hands tenant data to roles nobody reviewed, and leaves only RLS in the way.",
        sql: tt!("
            SELECT tt.qname, EXISTS (SELECT 1 FROM aclexplode(tt.relacl) a WHERE a.grantee = 0),
                   'privileges granted to PUBLIC',
                   format('REVOKE ALL ON %s FROM PUBLIC;', tt.qname),
                   NULL::text
              FROM tt ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "grants.anon_write",
        title: "The anonymous role cannot write tenant tables",
        severity: Severity::High,
        why: "Supabase's anon role is anyone with the public API key: INSERT, UPDATE, DELETE or TRUNCATE on a tenant table leaves only row level security between the internet and the data (and TRUNCATE not even that).",
        sql: tt!("
            SELECT tt.qname,
                   EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'anon'
                              AND has_table_privilege(r.oid, tt.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')),
                   'the anon role may write the table',
                   format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %s FROM anon;', tt.qname),
                   NULL::text
              FROM tt ORDER BY 1"),
        refine: None,
    },
    Check {
        id: "grants.truncate",
        title: "No role but the owner and the admins may TRUNCATE a tenant table",
        severity: Severity::High,
        why: "TRUNCATE does not go through row level security: a role allowed it empties every tenant's rows at once, whatever the policies say.",
        sql: tt!("
            SELECT tt.qname,
                   t.grantees IS NOT NULL,
                   'TRUNCATE granted to ' || t.grantees,
                   format('REVOKE TRUNCATE ON %s FROM %s;', tt.qname, coalesce(t.grantees, '<role>')),
                   NULL::text
              FROM tt LEFT JOIN LATERAL (
                SELECT string_agg(CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, ', ' ORDER BY r.rolname) AS grantees
                  FROM aclexplode(tt.relacl) x LEFT JOIN pg_roles r ON r.oid = x.grantee
                 WHERE x.privilege_type = 'TRUNCATE' AND x.grantee <> tt.relowner
                   AND NOT coalesce(r.rolsuper, false) AND NOT coalesce(r.rolname = ANY($7), false)) t ON true
             ORDER BY 1"),
        refine: None,
    },
];

/// The checks of a database distributed with Citus, run only where the extension is installed
/// (they read Citus' metadata, `pg_dist_partition`).
pub const CITUS_CHECKS: &[Check] = &[Check {
    id: "citus.distribution",
    title: "On Citus, every tenant table is distributed by its tenant column, colocated with the tenant table",
    severity: Severity::High,
    why: "A tenant table left on the coordinator holds every clinic's rows on one node and cannot be joined with a clinic's shards where they live; one distributed by another column (or copied to every node as a reference table) scatters or copies a clinic's rows across workers, so the clinic's queries go to every node and its foreign keys cannot be kept by clinic.",
    sql: concat!(tt!(""), ",
  root AS (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid::int8 = $4),
  placed AS (
    SELECT tt.qname, tt.tcol, p.logicalrelid IS NOT NULL AS distributed,
           p.partmethod::text AS method, p.repmodel::text AS repmodel,
           column_to_column_name(p.logicalrelid, p.partkey) AS by,
           p.colocationid IS NOT DISTINCT FROM (SELECT colocationid FROM root) AS colocated
      FROM tt LEFT JOIN pg_dist_partition p ON p.logicalrelid = tt.oid)
            SELECT qname,
                   NOT distributed OR method <> 'h' OR by IS DISTINCT FROM tcol OR NOT colocated,
                   CASE WHEN NOT distributed THEN 'not distributed: every clinic''s rows on the coordinator'
                        WHEN method = 'n' AND repmodel = 't' THEN 'a reference table: every clinic''s rows on every node'
                        WHEN method <> 'h' THEN 'a Citus local table: every clinic''s rows on the coordinator'
                        WHEN by IS DISTINCT FROM tcol THEN format('distributed by %s instead of %s', by, tcol)
                        ELSE format('not colocated with %s', (SELECT tenant_table FROM ctx)) END,
                   format('-- voxanne migrate --distributed places it; by hand: SELECT create_distributed_table(%L, %L, colocate_with => %L);',
                          qname, tcol, (SELECT tenant_table FROM ctx)),
                   NULL::text
              FROM placed ORDER BY 1"),
    refine: None,
}];

/// The per-table row counts (one query per tenant table by nature).
/// Where the database keeps a tamper-evident access log (Voxanne's `app.broken_access_chains`,
/// migrations/0028): every clinic's chain of records holds.
pub const ACCESS_CHAIN: (&str, &str, Severity) = (
    "access_log.chain",
    "Each clinic's access log records are chained by hash: a record changed, removed or inserted afterwards, by anyone with the rights to do it (a superuser included), breaks its clinic's chain at that record.",
    Severity::Critical,
);
pub const NULL_ROWS: (&str, &str, Severity) = (
    "tenant.null_rows",
    "Rows whose tenant is NULL (orphans) belong to nobody and leak through any path that bypasses RLS.",
    Severity::High,
);
pub const DANGLING_ROWS: (&str, &str, Severity) = (
    "tenant.dangling_rows",
    "Rows whose tenant does not exist are left-overs of a deleted tenant, or rows written into a tenant that never was.",
    Severity::High,
);
pub const CROSS_ROWS: (&str, &str, Severity) = (
    "fk.cross_tenant_rows",
    "Rows that already point into another tenant: data of one tenant is linked to (and often shown with) another's.",
    Severity::Critical,
);

/// Foreign keys between two tenant tables that lack the tenant column: for counting the rows
/// that already cross tenants.
pub const CROSS_FKS: &str = concat!(tt!(""), xfk!(), "
    SELECT format('%s (%I)', cq, conname), cq, pq, ctcol, ptcol,
           (SELECT array_agg(a.attname::text ORDER BY u.o) FROM unnest(conkey) WITH ORDINALITY u(n, o)
              JOIN pg_attribute a ON a.attrelid = coid AND a.attnum = u.n),
           (SELECT array_agg(a.attname::text ORDER BY u.o) FROM unnest(confkey) WITH ORDINALITY u(n, o)
              JOIN pg_attribute a ON a.attrelid = poid AND a.attnum = u.n)
      FROM xfk
     WHERE NOT EXISTS (SELECT 1 FROM generate_subscripts(conkey, 1) i
                        WHERE conkey[i] = catt AND confkey[i] = patt)
     ORDER BY 1");

/// The tenant tables for the counts, and the summary numbers.
pub const TENANT_TABLES: &str = tt!("
    SELECT tt.qname, tt.tcol, tt.oid::int8 = $4, tt.relrowsecurity, tt.relforcerowsecurity,
           EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = tt.oid)
      FROM tt ORDER BY 1");

/// Whether a policy expression (as `pg_get_expr` prints it) calls a tenant function
/// (`app.*`, `auth.*`, `current_setting`) outside any `( SELECT …)`: such a call is evaluated
/// once per row instead of once per statement.
pub fn calls_tenant_function_per_row(expr: &str) -> bool {
    let b = expr.as_bytes();
    let mut wrapped: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => {
                // A string literal ('' is an escaped quote inside it).
                i += 1;
                while i < b.len() {
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    i += 1;
                }
            }
            b'(' => {
                let rest = expr[i + 1..].trim_start();
                let select = rest.len() >= 6 && rest[..6].eq_ignore_ascii_case("select");
                wrapped.push(select);
            }
            b')' => {
                wrapped.pop();
            }
            _ => {
                let boundary = i == 0
                    || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'.');
                if boundary && !wrapped.iter().any(|w| *w) && tenant_call_at(&expr[i..]) {
                    return true;
                }
            }
        }
        i += 1;
    }
    false
}

fn tenant_call_at(s: &str) -> bool {
    let lower = s.get(..s.len().min(64)).unwrap_or("").to_ascii_lowercase();
    if lower.starts_with("current_setting(") {
        return true;
    }
    for schema in ["app.", "auth."] {
        if let Some(rest) = lower.strip_prefix(schema) {
            let name_len = rest
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .count();
            return name_len > 0 && rest[name_len..].starts_with('(');
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::calls_tenant_function_per_row as per_row;

    #[test]
    fn wrapped_calls_are_once_per_statement() {
        assert!(!per_row(
            "(org_id = ( SELECT app.current_org_id() AS current_org_id))"
        ));
        assert!(!per_row(
            "(tenant_id = ( SELECT (((auth.jwt() -> 'user_metadata'::text) ->> 'tenant_id'::text))::uuid AS uuid))"
        ));
        assert!(!per_row("(owner = ( SELECT auth.uid() AS uid)) "));
        assert!(!per_row("(name = 'app.x()'::text)"));
    }

    #[test]
    fn unwrapped_calls_are_per_row() {
        assert!(per_row("(org_id = app.current_org_id())"));
        assert!(per_row(
            "(tenant_id = ((auth.jwt() ->> 'tenant_id'::text))::uuid)"
        ));
        assert!(per_row("(owner = auth.uid())"));
        assert!(per_row(
            "(org_id = (current_setting('app.org_id'::text))::uuid)"
        ));
        assert!(per_row(
            "((a = ( SELECT 1 AS one)) AND (org_id = app.current_org_id()))"
        ));
    }
}
