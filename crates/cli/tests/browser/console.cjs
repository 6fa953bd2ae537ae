// The web console in a real browser (Debian's chromium driven by playwright-core), against a
// real `cairn serve` and runs made by the real `cairn run`; started by the `browser_console`
// test of crates/cli/tests/serve.rs, which passes what it set up in the environment and checks
// the store afterwards. Screenshots of each page go to CAIRN_SHOTS.
"use strict";
const assert = require("node:assert/strict");
const { chromium } = require("playwright-core");

const env = process.env;
const base = env.CAIRN_BASE;
const proxyBase = env.CAIRN_PROXY_BASE;
const run = env.CAIRN_RUN;
const slow = env.CAIRN_SLOW_RUN;
const shots = env.CAIRN_SHOTS;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  const browser = await chromium.launch({
    executablePath: env.CAIRN_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
  // Every console error of every page (a Content-Security-Policy violation is one).
  const errors = [];
  async function open(extraHTTPHeaders) {
    const ctx = await browser.newContext({ extraHTTPHeaders });
    const page = await ctx.newPage();
    page.on("console", (m) => {
      if (m.type() === "error" && !/status of 40[13]/.test(m.text())) errors.push(m.text());
    });
    page.on("pageerror", (e) => errors.push(String(e)));
    return page;
  }
  async function login(token) {
    const page = await open();
    await page.goto(base + "/runs");
    assert.match(page.url(), /\/login$/, "a page without identity goes to the login");
    await page.fill("input[name=token]", token);
    await Promise.all([page.waitForURL(/\/runs$/), page.click("form[action='/login'] button")]);
    return page;
  }
  const shot = (page, name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });

  const alice = await login("alice-token");

  // A running step's log grows on the page without a reload.
  await alice.goto(`${base}/runs/${slow}/steps/talk`);
  assert.equal(await alice.getAttribute("#log", "data-live"), "true", "the step runs");
  assert.ok(!(await alice.textContent("#log")).includes("done-marker"));
  await alice.waitForFunction(
    () => document.getElementById("log").textContent.includes("done-marker"),
    null,
    { timeout: 30000 },
  );
  await shot(alice, "step-live");

  // The runs page lists the run started by the CLI, within a second.
  const t0 = Date.now();
  await alice.goto(`${base}/runs`);
  await alice.waitForSelector(`a[href="/runs/${run}"]`, { timeout: 1000 });
  assert.ok(Date.now() - t0 < 1000);
  await shot(alice, "runs");
  await alice.goto(`${base}/approvals`);
  assert.ok(await alice.locator(`a[href="/runs/${run}"]`).count() > 0, "the gate waits");
  await shot(alice, "approvals");

  // A viewer has no answer form, and a request forged without the CSRF token is refused.
  const vic = await login("vic-token");
  await vic.goto(`${base}/runs/${run}`);
  assert.equal(await vic.locator("button[value=approve]").count(), 0);
  const forged = await vic.evaluate(async (u) => {
    const r = await fetch(u, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "comment=forged",
    });
    return r.status;
  }, `/runs/${run}/steps/gate/approve`);
  assert.equal(forged, 403);

  // The form without its CSRF token is refused, even for an approver.
  await alice.goto(`${base}/runs/${run}`);
  await alice.evaluate(() => document.querySelector("input[name=csrf]").remove());
  await Promise.all([alice.waitForLoadState("load"), alice.click("button[value=approve]")]);
  await alice.waitForSelector("p.message");
  assert.match(await alice.textContent("main"), /CSRF/);

  // The run's starter is refused by the gate's own rule.
  const starter = await login("starter-token");
  await starter.goto(`${base}/runs/${run}`);
  await Promise.all([starter.waitForLoadState("load"), starter.click("button[value=approve]")]);
  await starter.waitForSelector("p.message");
  assert.match(await starter.textContent("main"), /started this run/);
  await shot(starter, "refused");

  // A proxy's identity header from an address the server does not trust is ignored.
  const stranger = await open({ "X-Forwarded-User": "alice", "X-Forwarded-Groups": "cairn-approver" });
  const res = await stranger.goto(`${proxyBase}/runs/${run}`);
  assert.equal(res.status(), 401);
  assert.equal(await stranger.locator("button[value=approve]").count(), 0);

  // The approver answers from the page; the run goes on to its end.
  await alice.goto(`${base}/runs/${run}`);
  await shot(alice, "run-waiting");
  await alice.fill("input[name=comment]", "approved from the browser");
  await Promise.all([alice.waitForURL(/done=approved/), alice.click("button[value=approve]")]);
  let h1 = "";
  for (let i = 0; i < 150; i++) {
    h1 = await alice.textContent("h1");
    if (h1.includes("succeeded")) break;
    await sleep(200);
    await alice.reload();
  }
  assert.match(h1, /succeeded/);
  assert.match(await alice.textContent("ul.answers"), /alice/);
  await shot(alice, "run-done");
  await alice.goto(`${base}/runs/${run}/steps/after`);
  await shot(alice, "step");
  // The DAG as the run page shows it (an image: a script in it could not run).
  await alice.goto(`${base}/runs/${run}`);
  await alice.locator("img.dag").screenshot({ path: `${shots}/dag.png` });

  assert.deepEqual(errors, [], "no console error (a CSP violation would be one)");
  await browser.close();
  console.log("browser: ok");
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
