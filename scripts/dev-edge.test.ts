import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import getPort from "get-port";
import { createLocalJWKSet, jwtVerify } from "jose";
import { afterAll, describe, expect, it } from "vitest";
import { generateSigningKey, publicJwksOf } from "../core/auth/keys";
import { ConfigError } from "../core/config";
import { createApiClient } from "../test/support/clients";
import { createPostgresTestDatabase, type TestDatabase } from "../test/support/databases";
import { formPost } from "../test/support/edge";
import { waitFor } from "../test/support/stack";
import { dotenvFile, edgeVarsFrom, wranglerDevArgs, writePrivateEnvFile } from "./dev-edge";

/** `npm run dev:edge` con la línea de package.json, en su propio grupo de procesos (una terminal). */
function spawnDevEdge(env: NodeJS.ProcessEnv): ChildProcess {
  const pkg = JSON.parse(readFileSync("package.json", "utf8")) as {
    scripts: Record<string, string>;
  };
  // Como lo corre npm: `sh -c "<script>"` (con exec, el shell pasa a ser el proceso del edge).
  return spawn("sh", ["-c", pkg.scripts["dev:edge"] ?? ""], {
    env: { ...env, PATH: `${resolve("node_modules/.bin")}${delimiter}${env.PATH ?? ""}` },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
}

/** La línea de órdenes de cada proceso vivo del grupo: lo que cualquier usuario ve con `ps`. */
function commandLinesOfGroup(pgid: number): string[] {
  return execFileSync("ps", ["-A", "-o", "pgid=,stat=,args="], { encoding: "utf8" })
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter(([group, stat]) => group === String(pgid) && !stat?.startsWith("Z"))
    .map(([, , ...args]) => args.join(" "));
}

describe("dev:edge launch", () => {
  const secrets = {
    DATABASE_URL: "postgres://edge:pa$$word@127.0.0.1:5432/edge",
    NEON_WSPROXY: "127.0.0.1:5555",
    AUTH_SIGNING_KEYS: '[{"kty":"EC","d":"private-part"}]',
    AUTH_ISSUER: "http://127.0.0.1:8787",
  };

  it("passes on the edge settings set in the shell, and only those, under its own values", () => {
    const vars = edgeVarsFrom(
      {
        ENTITLEMENTS_MAX_AGE_MS: "1500",
        AUTH_CLIENT_FAILURE_LIMIT_ALL_SOURCES: "9",
        LOG_LEVEL: "debug",
        AUTH_ISSUER: "http://from-shell",
        HOME: "/home/dev",
        PGPASSWORD: "not-for-the-edge",
      },
      {
        DATABASE_URL: "postgres://u@127.0.0.1/db",
        NEON_WSPROXY: "127.0.0.1:1",
        AUTH_SIGNING_KEYS: "[]",
        AUTH_ISSUER: "http://127.0.0.1:8787",
      },
    );
    expect(vars).toEqual({
      ENTITLEMENTS_MAX_AGE_MS: "1500",
      AUTH_CLIENT_FAILURE_LIMIT_ALL_SOURCES: "9",
      LOG_LEVEL: "debug",
      DATABASE_URL: "postgres://u@127.0.0.1/db",
      NEON_WSPROXY: "127.0.0.1:1",
      AUTH_SIGNING_KEYS: "[]",
      AUTH_ISSUER: "http://127.0.0.1:8787",
    });
  });

  it("keeps every variable off wrangler's command line", () => {
    const args = wranglerDevArgs(8787, ["edge/.dev.vars", "/tmp/x/edge.env"]).join(" ");
    // El último archivo manda: las variables de dev-edge pisan las de un edge/.dev.vars.
    expect(args).toContain("--env-file edge/.dev.vars --env-file /tmp/x/edge.env");
    expect(args).not.toContain("--var");
    for (const value of Object.values(secrets)) expect(args).not.toContain(value);
  });

  it("writes the variables in a file only its user can open, in a folder only its user can list", () => {
    const file = writePrivateEnvFile(dotenvFile(secrets));
    try {
      expect(statSync(dirname(file.path)).mode & 0o777).toBe(0o700);
      expect(statSync(file.path).mode & 0o777).toBe(0o600);
      expect(dirname(file.path).startsWith(tmpdir())).toBe(true);
      // `$` escapado: wrangler expande `$word` (dotenv-expand) y cambiaría la contraseña.
      expect(readFileSync(file.path, "utf8")).toContain(
        "DATABASE_URL='postgres://edge:pa\\$\\$word@127.0.0.1:5432/edge'",
      );
    } finally {
      file.remove();
    }
    expect(existsSync(dirname(file.path))).toBe(false);
  });

  it("removes the files an earlier run left behind when it was killed, and none of a live one", async () => {
    const parent = mkdtempSync(join(tmpdir(), "farutech-env-sweep-"));
    try {
      // Un proceso ya terminado: su carpeta quedó (SIGKILL no deja limpiar).
      const dead = spawn(process.execPath, ["-e", ""]);
      const deadPid = dead.pid;
      await new Promise((r) => dead.once("exit", r));
      const stale = join(parent, `farutech-edge-env-${deadPid}-abc123`);
      const live = join(parent, `farutech-edge-env-${process.pid}-def456`);
      const foreign = join(parent, "something-else");
      for (const dir of [stale, live, foreign]) mkdirSync(dir, { mode: 0o700 });
      const file = writePrivateEnvFile(dotenvFile(secrets), parent);
      try {
        expect(existsSync(stale)).toBe(false);
        expect(existsSync(live)).toBe(true);
        expect(existsSync(foreign)).toBe(true);
        expect(existsSync(file.path)).toBe(true);
      } finally {
        file.remove();
      }
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });

  it("refuses, naming the variable, a value dotenv cannot carry unchanged", () => {
    expect(() => dotenvFile({ AUTH_ISSUER: "a'b\"c`d" })).toThrow(ConfigError);
    expect(() => dotenvFile({ AUTH_ISSUER: "a'b\"c`d" })).toThrow(/AUTH_ISSUER/);
    expect(() => dotenvFile({ DATABASE_URL: "postgres://x\\" })).toThrow(/DATABASE_URL/);
  });

  it.each([
    ["EDGE_PORT", { EDGE_PORT: "abc" }],
    ["WSPROXY_PORT", { WSPROXY_PORT: "99999" }],
  ])(
    "refuses an invalid %s with a message naming it, without a stack trace",
    async (name, bad) => {
      const proc = spawn(process.execPath, ["--import", "tsx", "scripts/dev-edge.ts"], {
        env: { ...process.env, DATABASE_URL: "postgres://127.0.0.1:1/none", ...bad },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let err = "";
      proc.stdout?.resume();
      proc.stderr?.on("data", (d: Buffer) => {
        err += d.toString();
      });
      const code = await new Promise<number | null>((r) => proc.once("exit", r));
      expect(code).toBe(1);
      expect(err).toContain(name);
      expect(err).not.toMatch(/\n\s+at /);
    },
    30_000,
  );
});

// `wrangler dev` de verdad (workerd) contra un Postgres de prueba, a través del wsproxy de dev-edge.
describe("npm run dev:edge", () => {
  let db: TestDatabase | undefined;
  let child: ChildProcess | undefined;

  afterAll(async () => {
    if (child?.pid && child.exitCode === null) {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {}
    }
    await db?.drop();
  });

  it("hands wrangler the database, the signing keys and the issuer without putting them on any command line", {
    timeout: 120_000,
  }, async () => {
    db = await createPostgresTestDatabase();
    const databaseUrl = db.edgeUrl ?? "";
    const client = await createApiClient(db.handle.db, {
      kind: "admin",
      roles: ["platform_admin"],
    });
    const key = await generateSigningKey("dev-edge-test");
    const port = await getPort();
    // Comillas de los tres tipos no: `$`, una simple y dobles, que el archivo debe llevar tal cual.
    const issuer = `http://127.0.0.1:${port}/it's-$HOME-"\${USER}"`;
    const { DATABASE_URL: _db, AUTH_SIGNING_KEYS: _k, AUTH_ISSUER: _i, ...inherited } = process.env;
    let output = "";
    const proc = spawnDevEdge({
      ...inherited,
      DATABASE_URL: databaseUrl,
      AUTH_SIGNING_KEYS: JSON.stringify([key]),
      AUTH_ISSUER: issuer,
      EDGE_PORT: String(port),
      LOG_LEVEL: "warn",
    });
    child = proc;
    proc.stdout?.on("data", (d: Buffer) => {
      output += d.toString();
    });
    proc.stderr?.on("data", (d: Buffer) => {
      output += d.toString();
    });
    const exited = new Promise<number | null>((r) => proc.once("exit", r));
    const edge = `http://127.0.0.1:${port}`;
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`dev:edge exited early:\n${output}`);
        const res = await fetch(`${edge}/healthz`).catch(() => undefined);
        return res?.status === 200 ? true : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );

    // Ningún proceso del grupo (dev-edge, wrangler, workerd) lleva un secreto en su línea de órdenes.
    const group = proc.pid ?? 0;
    const lines = commandLinesOfGroup(group);
    expect(lines.some((l) => l.includes("wrangler"))).toBe(true);
    for (const line of lines) {
      expect(line).not.toContain(databaseUrl);
      expect(line).not.toContain(key.d);
    }
    const envFile = /--env-file (\S+)/.exec(lines.join("\n"))?.[1] ?? "";
    expect(statSync(dirname(envFile)).mode & 0o777).toBe(0o700);
    expect(statSync(envFile).mode & 0o777).toBe(0o600);

    // workerd recibió las cuatro: emite un token (base por el wsproxy) firmado con esa clave y emisor.
    const discovery = (await (await fetch(`${edge}/.well-known/openid-configuration`)).json()) as {
      issuer: string;
    };
    expect(discovery.issuer).toBe(issuer);
    const res = await fetch(
      `${edge}/oauth/token`,
      formPost(
        { grant_type: "client_credentials" },
        { authorization: `Basic ${btoa(`${client.id}:${client.secret}`)}` },
      ),
    );
    expect(res.status).toBe(200);
    const { access_token } = (await res.json()) as { access_token: string };
    const { payload } = await jwtVerify(
      access_token,
      createLocalJWKSet(publicJwksOf([key]) as Parameters<typeof createLocalJWKSet>[0]),
      { issuer },
    );
    expect(payload.sub).toBe(client.id);

    // Ctrl-C: wrangler se detiene y el archivo con las claves desaparece con su carpeta.
    process.kill(-group, "SIGINT");
    await exited;
    child = undefined;
    expect(existsSync(dirname(envFile))).toBe(false);
    await waitFor(async () => (commandLinesOfGroup(group).length === 0 ? true : undefined), {
      timeoutMs: 10_000,
      intervalMs: 100,
    });
  });

  it("takes wrangler and workerd with it when it is killed without a chance to clean up", {
    timeout: 120_000,
  }, async () => {
    db ??= await createPostgresTestDatabase();
    const port = await getPort();
    const { DATABASE_URL: _db, AUTH_SIGNING_KEYS: _k, AUTH_ISSUER: _i, ...inherited } = process.env;
    const proc = spawnDevEdge({
      ...inherited,
      DATABASE_URL: db.edgeUrl ?? "",
      AUTH_SIGNING_KEYS: JSON.stringify([await generateSigningKey("dev-edge-kill")]),
      AUTH_ISSUER: `http://127.0.0.1:${port}`,
      EDGE_PORT: String(port),
      LOG_LEVEL: "warn",
    });
    child = proc;
    proc.stdout?.resume();
    proc.stderr?.resume();
    await waitFor(
      async () => {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
        return res?.status === 200 ? true : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    const group = proc.pid ?? 0;
    // Solo dev-edge (un IDE que lo mata, el OOM killer): wrangler y workerd no le sobreviven.
    process.kill(group, "SIGKILL");
    await waitFor(async () => (commandLinesOfGroup(group).length === 0 ? true : undefined), {
      timeoutMs: 15_000,
      intervalMs: 200,
    });
    child = undefined;
  });
});
