import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { readStages } from "./dockerfile";

// Makefile: `make -n <objetivo>` imprime lo que correría sin correrlo. Se comprueba que cada
// objetivo del seed 001 existe y llama a scripts, targets del Dockerfile y archivos reales.
const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { scripts: Record<string, string> };

function dryRun(target: string, vars: string[] = []): string[] {
  return execFileSync("make", ["-n", "--no-print-directory", target, ...vars], { encoding: "utf8" })
    .split("\n")
    .filter((l) => l.trim() !== "");
}

/** Scripts de npm que nombra una línea (`npm run x`, `npm start`, `npm test`). */
function npmScripts(line: string): string[] {
  return [...line.matchAll(/npm (?:run(?: -s)? (\S+)|(start|test))/g)].map(
    (m) => m[1] ?? m[2] ?? "",
  );
}

const EXPECTED: Record<string, RegExp[]> = {
  build: [/^npm run build$/],
  "build-functions": [
    /^docker build -f infra\/docker\/Dockerfile --target functions -t farutech\/functions:latest \.$/,
  ],
  "build-worker": [
    /^docker build -f infra\/docker\/Dockerfile --target worker -t farutech\/worker:latest \.$/,
  ],
  // Ruta absoluta: wrangler resuelve un --outdir relativo contra la carpeta de --config (edge/).
  "build-edge": [
    new RegExp(
      `^npx wrangler deploy --dry-run --config edge/wrangler\\.toml --outdir ${resolve("dist/edge").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`,
    ),
  ],
  "docker-up": [
    /^test -f \.env \|\| npm run -s keys:generate -- all > \.env$/,
    /^docker compose up -d --build$/,
  ],
  "docker-down": [/^docker compose down$/],
  "migrate-db": [/^npm run db:migrate$/],
  "seed-demo": [/^npm run db:seed$/],
  dev: [/^npm start$/],
  test: [/^npm test$/],
  check: [/^npm run check$/],
};

describe("Makefile", () => {
  it.each(Object.entries(EXPECTED))("make %s runs the expected commands", (target, patterns) => {
    const lines = dryRun(target);
    expect(lines).toHaveLength(patterns.length);
    for (const [i, pattern] of patterns.entries()) expect(lines[i]).toMatch(pattern);
    for (const line of lines)
      for (const script of npmScripts(line)) expect(pkg.scripts, line).toHaveProperty(script);
  });

  it("every target is phony, so a file with its name never shadows it", () => {
    const phony = /^\.PHONY:(.*)$/m.exec(readFileSync("Makefile", "utf8"))?.[1]?.split(/\s+/) ?? [];
    for (const target of [...Object.keys(EXPECTED), "bench"]) expect(phony).toContain(target);
  });

  it("make bench runs every bench:* script of package.json and stops at the first failure", () => {
    const benches = Object.keys(pkg.scripts).filter((s) => s.startsWith("bench:"));
    expect(benches).toEqual(expect.arrayContaining(["bench:admin", "bench:pipeline"]));
    const [line = ""] = dryRun("bench");
    expect(line).toBe(`${benches.map((s) => `npm run ${s} &&`).join(" ")} true`);
  });

  it("docker targets build Dockerfile targets that exist, and compose can be swapped", () => {
    const stages = readStages().map((s) => s.name);
    for (const target of ["build-functions", "build-worker"]) {
      const stage = /--target (\S+)/.exec(dryRun(target)[0] ?? "")?.[1] ?? "";
      expect(stages).toContain(stage);
    }
    expect(dryRun("docker-down", ["COMPOSE=docker-compose"])).toEqual(["docker-compose down"]);
    expect(existsSync("docker-compose.yml")).toBe(true);
  });

  it("make build-edge bundles the Cloudflare Worker (runs here: no Docker, no account)", {
    timeout: 60_000,
  }, () => {
    // Relativa, como la de por defecto: tiene que quedar respecto de la raíz del repo.
    const relative = join(".data", `edge-bundle-${process.pid}`);
    const out = resolve(relative);
    try {
      execFileSync("make", ["--no-print-directory", "build-edge", `EDGE_OUT=${relative}`], {
        encoding: "utf8",
        stdio: "pipe",
        env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
      });
      expect(readFileSync(join(out, "worker.js"), "utf8")).toContain("/.well-known/jwks.json");
    } finally {
      rmSync(out, { recursive: true, force: true });
      rmSync(resolve("edge", relative), { recursive: true, force: true });
    }
  });
});
