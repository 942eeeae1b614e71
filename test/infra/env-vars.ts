import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

// Variables de entorno que lee el código: claves de los esquemas zod de configuración
// (`NAME: z…`, `NAME: optionalString`, `NAME: envNumber(…)`) y lecturas directas (`process.env.NAME`, `env.NAME`).
const SOURCE_DIRS = [
  "core",
  "contracts",
  "db",
  "functions",
  "edge",
  "workers",
  "scripts",
  "infra",
  "bench",
  "test/support",
];
const PATTERNS = [
  /^\s+([A-Z][A-Z0-9_]{2,}):\s*(?:z\.|optionalString|envNumber\()/gm,
  /\bprocess\.env\.([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)\b/g,
  /(?<![.\w])env\.([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b/g,
];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === "migrations" ? [] : sourceFiles(path);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts") ? [path] : [];
  });
}

/** Nombre → archivos que lo leen. */
export function envVarsReadByCode(dirs = SOURCE_DIRS): Map<string, Set<string>> {
  const found = new Map<string, Set<string>>();
  for (const file of dirs.flatMap(sourceFiles)) {
    const text = readFileSync(file, "utf8");
    for (const pattern of PATTERNS)
      for (const match of text.matchAll(pattern)) {
        const name = match[1];
        if (!name) continue;
        const files = found.get(name) ?? new Set<string>();
        files.add(file);
        found.set(name, files);
      }
  }
  return found;
}
