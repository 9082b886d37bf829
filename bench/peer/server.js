// The benchmark's peer: GET /api/v1/calls?limit=N as a typical Express + node-postgres
// service would serve it, doing what Voxanne does for the same request: verify the HS256
// token, then one tenant transaction as voxanne_app (BEGIN; SET LOCAL context; the
// membership check; the page under forced RLS; COMMIT), and the page as JSON.
//
// Environment: PORT, JWT_SECRET, and libpq's PGHOST, PGPORT, PGDATABASE, PGUSER.
'use strict';

const express = require('express');
const jwt = require('jsonwebtoken');
const { Pool } = require('pg');

const pool = new Pool({ max: 10 });
const secret = process.env.JWT_SECRET;
const app = express();
app.disable('x-powered-by');
app.disable('etag');

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const PAGE = `SELECT id, org_id, contact_id, direction, status, from_number, to_number,
       started_at, ended_at, duration_seconds, recording_status, recording_path,
       NULL::text AS transcript, summary, created_at
  FROM calls WHERE org_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2`;

app.get('/api/v1/calls', async (req, res) => {
  const header = req.get('authorization') || '';
  let claims;
  try {
    claims = jwt.verify(header.replace(/^Bearer /, ''), secret, {
      algorithms: ['HS256'],
      audience: 'authenticated',
    });
  } catch (e) {
    return res.status(401).json({ error: { code: 'unauthenticated', message: e.message } });
  }
  const org = claims.app_metadata && claims.app_metadata.org_id;
  const user = claims.sub;
  if (!UUID.test(org || '') || !UUID.test(user || '')) {
    return res.status(401).json({ error: { code: 'unauthenticated', message: 'no org' } });
  }
  const limit = Math.min(Math.max(parseInt(req.query.limit, 10) || 50, 1), 100);
  const client = await pool.connect();
  try {
    // One batch, as Voxanne's (the ids are checked above, so they may be literals in it):
    // node-postgres answers a multi-statement query with one result per statement.
    const batch = await client.query(
      `BEGIN; SET LOCAL app.org_id = '${org}'; SET LOCAL app.user_id = '${user}'; ` +
        'SELECT role, status FROM app.current_membership()'
    );
    const member = batch[batch.length - 1];
    if (member.rows.length === 0 || member.rows[0].status !== 'active') {
      await client.query('ROLLBACK');
      return res.status(403).json({ error: { code: 'not_a_member', message: 'not a member' } });
    }
    const page = await client.query(PAGE, [org, limit + 1]);
    await client.query('COMMIT');
    const more = page.rows.length > limit;
    const data = page.rows.slice(0, limit);
    const last = data[data.length - 1];
    res.json({
      data,
      next_cursor: more && last ? Buffer.from(`${last.started_at.toISOString()},${last.id}`).toString('base64url') : null,
    });
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    res.status(500).json({ error: { code: 'internal', message: 'internal error' } });
  } finally {
    client.release();
  }
});

const server = app.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`listening on ${server.address().port}`);
});
process.on('SIGTERM', () => server.close(() => pool.end().then(() => process.exit(0))));
