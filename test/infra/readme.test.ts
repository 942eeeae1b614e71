import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { envVarsReadByCode } from "./env-vars";

// El README es la puerta de entrada: se comprueba contra el código para que no se desactualice.
const readme = readFileSync("README.md", "utf8");
const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { scripts: Record<string, string> };
const makefile = readFileSync("Makefile", "utf8");

/** Bloques de código con su lenguaje. */
function codeBlocks(markdown: string): { lang: string; body: string }[] {
  return [...markdown.matchAll(/^```(\w*)\n([\s\S]*?)^```/gm)].map((m) => ({
    lang: m[1] ?? "",
    body: m[2] ?? "",
  }));
}

/** Filas de la tabla de configuración: primera celda con `VARIABLE`s. */
function configTable(): Set<string> {
  const section = readme.slice(readme.indexOf("## Configuración"));
  const table = section.slice(0, section.indexOf("\n## "));
  const names = new Set<string>();
  for (const row of table.split("\n").filter((l) => l.startsWith("| `")))
    for (const m of (row.split("|")[1] ?? "").matchAll(/`([A-Z][A-Z0-9_]+)`/g))
      if (m[1]) names.add(m[1]);
  return names;
}

describe("README.md", () => {
  it("documents every environment variable the code reads, in the configuration table", () => {
    const documented = configTable();
    const read = envVarsReadByCode();
    expect(read.size).toBeGreaterThan(30);
    const missing = [...read.keys()].filter((name) => !documented.has(name));
    expect(missing, "add these to the README's Configuración table").toEqual([]);
    // Y la tabla no documenta variables que ya nadie lee.
    const stale = [...documented].filter((name) => !read.has(name));
    expect(stale, "remove these from the README or read them in code").toEqual([]);
  });

  it("has an architecture diagram and the two commands", () => {
    expect(codeBlocks(readme).some((b) => b.lang === "mermaid")).toBe(true);
    const commands = codeBlocks(readme).find((b) => b.body.includes("npm start"))?.body ?? "";
    expect(commands).toContain("npm test");
  });

  it("links only to files that exist, including the ADRs and the other guides", () => {
    const links = [...readme.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)]
      .map((m) => m[1] ?? "")
      .filter((href) => !/^[a-z]+:/.test(href));
    for (const href of links) expect(existsSync(join(dirname("README.md"), href)), href).toBe(true);
    for (const doc of [
      "docs/adr/0001-overrides-tablas-vs-jsonb.md",
      "docs/adr/0002-outbox.md",
      "docs/adr/0003-tiers-de-base-de-datos.md",
      "docs/rotacion-de-claves.md",
      "docs/edge-cache.md",
      "sdk/README.md",
      "infra/k8s/README.md",
    ])
      expect(links).toContain(doc);
  });

  it("names only npm scripts and make targets that exist", () => {
    for (const m of readme.matchAll(/npm run(?: -s)? ([a-z][\w:-]*)/g))
      expect(pkg.scripts, m[0]).toHaveProperty(m[1] ?? "");
    for (const m of readme.matchAll(/`make ([a-z][\w-]*)/g))
      expect(makefile, m[0]).toMatch(new RegExp(`^${m[1]}:`, "m"));
  });

  it("marks every command block that needs Docker, a cluster or a cloud account", () => {
    const needsMore = /(^|\s)(docker|kubectl|npx sst|sst )/m;
    const blocks = codeBlocks(readme).filter((b) => b.lang === "bash" && needsMore.test(b.body));
    expect(blocks.length).toBeGreaterThanOrEqual(4);
    for (const block of blocks)
      expect(block.body.split("\n")[0], block.body).toMatch(/^# Requiere /);
  });

  it("covers running with compose, SST and Kubernetes, and the operations runbook", () => {
    for (const heading of [
      "## Topología local y puertos",
      "## Correr con Docker Compose",
      "## Desplegar con SST (AWS y Cloudflare)",
      "## Desplegar en Kubernetes",
      "### Runbook",
    ])
      expect(readme).toContain(heading);
    for (const topic of ["replay", "Rotar las claves de firma", "GDPR", "ENCRYPTION_KEYS"])
      expect(readme).toContain(topic);
  });
});
