// The web client in a real browser: headless Chromium (the system's
// /usr/bin/chromium, no browser download) driven by playwright-core.
//
// Two users in two browser contexts: A signs in with the development
// token button, B with a pasted token. A sends and B sees the message
// without reloading within 2 s; B replies and A sees it; both windows
// show the same messages in the same order; a reload keeps the history;
// a message holding <script> shows as text and runs nothing. Screenshots
// of both windows go to ARTIFACTS_DIR.
//
// Environment: MESSENGER_URL (the cluster's public URL),
// MESSENGER_JWT_SECRET (to mint B's token), ARTIFACTS_DIR, CHROMIUM
// (default /usr/bin/chromium).
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const URL_ = process.env.MESSENGER_URL;
const SECRET = process.env.MESSENGER_JWT_SECRET;
const ARTIFACTS = process.env.ARTIFACTS_DIR || "build/artifacts";
const LIVE_MAX_MS = 2000;
const STEP_TIMEOUT_MS = 10000;

function b64url(buf) {
  return Buffer.from(buf).toString("base64").replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

function mint(user) {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ sub: String(user), exp: Math.floor(Date.now() / 1000) + 3600 }));
  const sig = b64url(crypto.createHmac("sha256", SECRET).update(head + "." + body).digest());
  return `${head}.${body}.${sig}`;
}

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
}

// The message texts of a window, in the order shown.
async function shown(page) {
  return page.$$eval("#messages li", (lis) => lis.map((li) => ({
    id: li.dataset.id,
    text: li.querySelector(".text").textContent,
  })));
}

// Sends text from page and waits for it to show in page itself.
async function sendFrom(page, text) {
  await page.fill("#compose-text", text);
  await page.click("#send-btn");
  await page.waitForFunction((t) => Array.from(document.querySelectorAll("#messages li .text"))
    .some((e) => e.textContent === t), text, { timeout: STEP_TIMEOUT_MS });
}

// Milliseconds until text shows in page, which does not reload.
async function timeUntilShown(page, text) {
  const start = Date.now();
  await page.waitForFunction((t) => Array.from(document.querySelectorAll("#messages li .text"))
    .some((e) => e.textContent === t), text, { timeout: STEP_TIMEOUT_MS, polling: 20 });
  return Date.now() - start;
}

async function main() {
  check(URL_ && SECRET, "MESSENGER_URL and MESSENGER_JWT_SECRET are set");
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const base = 7000000 + Math.floor(Math.random() * 1000000) * 2;
  const userA = base, userB = base + 1;

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox"],
  });
  const pages = [];
  try {
    const ctxA = await browser.newContext({ viewport: { width: 1000, height: 640 } });
    const ctxB = await browser.newContext({ viewport: { width: 1000, height: 640 } });
    const a = await ctxA.newPage();
    const b = await ctxB.newPage();
    pages.push(["A", a], ["B", b]);
    const errors = [];
    for (const [name, p] of pages) {
      p.on("pageerror", (e) => errors.push(`${name}: ${e.message}`));
      p.setDefaultTimeout(STEP_TIMEOUT_MS);
    }

    // A: the development token button (the cluster runs in dev mode).
    await a.goto(URL_ + "/");
    await a.waitForSelector("#dev-form:not([hidden])");
    await a.fill("#dev-user", String(userA));
    await a.click("#dev-mint");
    await a.waitForSelector("#app:not([hidden])");
    check((await a.textContent("#whoami")).includes(String(userA)), "A is signed in as userA");

    // B: a pasted token.
    await b.goto(URL_ + "/");
    await b.fill("#token-input", mint(userB));
    await b.click("#signin-btn");
    await b.waitForSelector("#app:not([hidden])");

    // A 4xx shows as a clear message: a conversation with oneself.
    await a.fill("#peer-input", String(userA));
    await a.click("#open-btn");
    await a.waitForSelector("#error:not([hidden])");

    // Both open their conversation; B waits on the events poll.
    await a.fill("#peer-input", String(userB));
    await a.click("#open-btn");
    await b.fill("#peer-input", String(userA));
    await b.click("#open-btn");
    await b.waitForSelector("#live:not([hidden])");
    await b.waitForTimeout(300); // B's first poll is waiting now

    const first = "hello from A " + base;
    const [toB] = await Promise.all([timeUntilShown(b, first), sendFrom(a, first)]);
    console.log(`B saw A's message ${toB} ms after A clicked Send`);
    check(toB <= LIVE_MAX_MS, `B sees A's message within ${LIVE_MAX_MS} ms (took ${toB})`);

    const reply = "reply from B " + base;
    const [toA] = await Promise.all([timeUntilShown(a, reply), sendFrom(b, reply)]);
    console.log(`A saw B's reply ${toA} ms after B clicked Send`);
    check(toA <= LIVE_MAX_MS, `A sees B's reply within ${LIVE_MAX_MS} ms (took ${toA})`);

    // Markup in a message is text, never HTML.
    const hostile = `<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> ${base}`;
    const [toB2] = await Promise.all([timeUntilShown(b, hostile), sendFrom(a, hostile)]);
    check(toB2 <= LIVE_MAX_MS, `B sees the third message within ${LIVE_MAX_MS} ms (took ${toB2})`);
    for (const [name, p] of pages) {
      check(await p.evaluate(() => window.__pwned === undefined), `${name}: no script ran`);
      check(await p.$$eval("#messages script, #messages img", (e) => e.length) === 0,
        `${name}: no element was made from message text`);
    }

    // The same messages in the same order in both windows.
    const seenA = await shown(a);
    const seenB = await shown(b);
    check(seenA.length === 3, `A shows 3 messages (${seenA.length})`);
    check(JSON.stringify(seenA) === JSON.stringify(seenB), "A and B show the same order");
    check(seenA.map((m) => m.text).join("|") === [first, reply, hostile].join("|"),
      "the order is the order of sending");

    // A reload keeps the history (and the sign-in of this tab).
    await b.reload();
    await b.waitForFunction((n) => document.querySelectorAll("#messages li").length === n, 3);
    check(JSON.stringify(await shown(b)) === JSON.stringify(seenA), "B's history after a reload");
    check(await b.$$eval("#conv-list li", (lis) => lis.length) === 1, "B lists one conversation");
    check((await b.textContent("#conv-list li .snippet")).startsWith("<script>"),
      "the snippet shows the markup as text");

    // Live updates still work after the reload.
    const after = "after reload " + base;
    const [toB3] = await Promise.all([timeUntilShown(b, after), sendFrom(a, after)]);
    check(toB3 <= LIVE_MAX_MS, `B sees a message after its reload within ${LIVE_MAX_MS} ms (took ${toB3})`);

    check(errors.length === 0, "no script errors: " + errors.join("; "));
    for (const [name, p] of pages) {
      const file = path.join(ARTIFACTS, `browser-${name}.png`);
      await p.screenshot({ path: file });
      console.log("screenshot: " + file);
    }
    console.log("PASS browser chat");
  } catch (e) {
    for (const [name, p] of pages) {
      const file = path.join(ARTIFACTS, `browser-${name}-failed.png`);
      await p.screenshot({ path: file }).catch(() => {});
      console.log("screenshot: " + file);
    }
    throw e;
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error("FAIL browser chat: " + (e && e.stack ? e.stack : e));
  process.exit(1);
});
