import { existsSync, readFileSync } from "node:fs";
import { Copy } from "dockerfile-ast";
import { describe, expect, it } from "vitest";
import { ENTRY_POINTS } from "../../scripts/build";
import { edgeContainerArgs } from "../../scripts/edge-container";
import { SHUTDOWN_DEADLINE_MS } from "../../workers/runtime/consumer";
import {
  args,
  DOCKERFILE,
  effective,
  execForm,
  lineage,
  readStages,
  type Stage,
  stageNamed,
} from "./dockerfile";

// Análisis estático de infra/docker/Dockerfile: aquí no hay motor Docker para construirlo.
// Que los bundles compilen y arranquen lo prueba build.test.ts.
const stages = readStages();
const targets = { functions: 3000, worker: 9464, edge: 8787 } as const;
const pkg = JSON.parse(readFileSync("package.json", "utf8")) as {
  devDependencies: Record<string, string>;
};

function copies(stage: Stage): Copy[] {
  return stage.instructions.filter((i): i is Copy => i instanceof Copy);
}

function fromStage(c: Copy): string | undefined {
  return (
    c
      .getFlags()
      .find((f) => f.getName() === "from")
      ?.getValue() ?? undefined
  );
}

function runs(stage: Stage): string[] {
  return stage.instructions.filter((i) => i.getKeyword() === "RUN").map((i) => args(i).join(" "));
}

describe("infra/docker/Dockerfile", () => {
  it("is multi-stage with a target per deployable", () => {
    expect(stages.length).toBeGreaterThanOrEqual(4);
    for (const target of Object.keys(targets)) expect(stageNamed(stages, target)).toBeDefined();
  });

  it.each(Object.entries(targets))("%s runs as a non-root user", (target) => {
    const user = effective(stages, target, "USER");
    expect(user, `${target} has no USER`).toBeDefined();
    const name = user ? (args(user)[0] ?? "") : "";
    expect(name.split(":")[0]).not.toMatch(/^(root|0)$/);
  });

  it.each(Object.entries(targets))(
    "%s exposes its port and health-checks /healthz on it",
    (target, port) => {
      const expose = effective(stages, target, "EXPOSE");
      expect(expose && args(expose)).toContain(String(port));
      const healthcheck = effective(stages, target, "HEALTHCHECK");
      expect(healthcheck, `${target} has no HEALTHCHECK`).toBeDefined();
      const probe = healthcheck ? execForm(healthcheck, 0).join(" ") : "";
      expect(probe).toContain(`http://127.0.0.1:${port}/healthz`);
    },
  );

  it("stops the worker with SIGTERM, whose drain gives up at 30 s", () => {
    const stop = effective(stages, "worker", "STOPSIGNAL");
    expect(stop && args(stop)).toEqual(["SIGTERM"]);
    // El plazo del drenaje vive en workers/main.ts; compose, ECS y Kubernetes esperan más.
    // El plazo que cumple workers/main.ts (sale pase lo que pase): el orquestador espera más.
    expect(SHUTDOWN_DEADLINE_MS).toBe(30_000);
  });

  it("final images get node_modules only from an `npm ci --omit=dev` stage", () => {
    for (const target of ["functions", "worker"]) {
      const modules = lineage(stages, target)
        .flatMap(copies)
        .filter((c) => args(c).some((a) => a.includes("node_modules")));
      expect(modules.length, `${target} copies no node_modules`).toBe(1);
      const from = (modules[0] && fromStage(modules[0])) ?? "";
      const source = stageNamed(stages, from);
      expect(runs(source).some((r) => /npm ci\b.*--omit=dev/.test(r))).toBe(true);
      // Y la imagen final no trae tsx: corre JavaScript ya compilado.
      const cmd = effective(stages, target, "CMD");
      expect(cmd && execForm(cmd)[0]).toBe("node");
    }
    // Ninguna etapa final instala dependencias de desarrollo.
    for (const target of Object.keys(targets))
      for (const r of runs(stageNamed(stages, target)))
        expect(r).not.toMatch(/npm (ci|i|install)\b(?!.*(--omit=dev|--global))/);
  });

  it("CMD entry points are bundles that npm run build produces from existing sources", () => {
    const bundles = Object.keys(ENTRY_POINTS).map((name) => `dist/${name}.js`);
    for (const target of ["functions", "worker"]) {
      const cmd = effective(stages, target, "CMD");
      const entry = cmd ? (execForm(cmd)[1] ?? "") : "";
      expect(bundles).toContain(entry);
    }
    for (const source of Object.values(ENTRY_POINTS)) expect(existsSync(source)).toBe(true);
    // Lo que la base de runtime copia del build sale de ENTRY_POINTS (más migraciones); la
    // entrada del contenedor del edge va solo a la imagen del edge, que la corre.
    const nodeBundles = bundles.filter((b) => b !== "dist/edge-container.js");
    const fromBuild = copies(stageNamed(stages, "node-runtime"))
      .filter((c) => fromStage(c) === "build")
      .flatMap((c) => args(c).slice(0, -1));
    for (const file of fromBuild)
      expect([...nodeBundles.map((b) => `/app/${b}`), "/app/dist/migrations"]).toContain(file);
    expect(fromBuild).toEqual(expect.arrayContaining(nodeBundles.map((b) => `/app/${b}`)));
    const edgeCmd = effective(stages, "edge", "CMD");
    expect(edgeCmd ? execForm(edgeCmd) : []).toEqual(["node", "dist/edge-container.js"]);
    const fromBuildToEdge = copies(stageNamed(stages, "edge"))
      .filter((c) => fromStage(c) === "build")
      .flatMap((c) => args(c).slice(0, -1));
    expect(fromBuildToEdge).toEqual(
      expect.arrayContaining(["/app/dist/edge-container.js", "/app/package.json"]),
    );
  });

  it("the edge image copies the Worker bundle from where the build stage writes it", () => {
    const run = stageNamed(stages, "build")
      .instructions.filter((i) => i.getKeyword() === "RUN")
      .map((i) => args(i).join(" "))
      .find((line) => line.includes("wrangler deploy"));
    const outdir = run ? /--outdir (\S+)/.exec(run)?.[1] : undefined;
    // Absoluta: wrangler resuelve una relativa contra la carpeta de --config (edge/), no /app.
    expect(outdir?.startsWith("/")).toBe(true);
    const worker = copies(stageNamed(stages, "edge"))
      .filter((c) => fromStage(c) === "build")
      .flatMap((c) => args(c).slice(0, -1))
      .find((source) => source.endsWith("/worker.js"));
    expect(worker).toBe(`${outdir}/worker.js`);
  });

  it("every COPY from the build context names a path in the repo", () => {
    const local = stages.flatMap(copies).filter((c) => fromStage(c) === undefined);
    expect(local.length).toBeGreaterThan(0);
    for (const c of local)
      for (const source of args(c).slice(0, -1))
        expect(existsSync(source), `${DOCKERFILE}: COPY ${source}`).toBe(true);
  });

  it("the edge image runs the wrangler version the repo pins, with the worker's compatibility date", () => {
    const edge = stageNamed(stages, "edge");
    const arg = edge.instructions.find(
      (i) => i.getKeyword() === "ARG" && args(i)[0]?.startsWith("WRANGLER_VERSION="),
    );
    expect(arg && args(arg)[0]).toBe(`WRANGLER_VERSION=${pkg.devDependencies.wrangler}`);
    // La entrada (scripts/edge-container.ts) lanza `wrangler dev worker.js` con esa fecha.
    const command = edgeContainerArgs("edge.env", "8787");
    const date = command[command.indexOf("--compatibility-date") + 1];
    const toml = readFileSync("edge/wrangler.toml", "utf8");
    expect(toml).toContain(`compatibility_date = "${date}"`);
    expect(command.slice(0, 3)).toEqual(["dev", "worker.js", "--no-bundle"]);
    expect(command).toContain("--env-file");
    expect(command).not.toContain("--var");
  });
});
