import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

// Docker aplica un patrón de .dockerignore sin `**/` solo en la raíz del contexto: `.dev.vars`
// dejaba entrar edge/.dev.vars (claves y DATABASE_URL de `wrangler dev`) en la capa de build.
describe(".dockerignore", () => {
  const patterns = readFileSync(".dockerignore", "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));

  it("excludes local secrets and build state at any depth", () => {
    for (const name of [".dev.vars", ".env", ".env.*", ".wrangler", "node_modules", "dist"]) {
      expect(patterns, name).toContain(`**/${name}`);
    }
  });

  it("covers at any depth every secret file git ignores", () => {
    const gitignored = readFileSync(".gitignore", "utf8")
      .split("\n")
      .map((l) => l.trim().replace(/\/$/, ""))
      .filter((l) => /env|vars|secret/.test(l));
    expect(gitignored.length).toBeGreaterThan(1);
    for (const name of gitignored) expect(patterns, name).toContain(`**/${name}`);
  });
});
