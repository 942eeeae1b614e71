import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { invalidConfiguration } from "../core/config-error";
import { isAlive } from "../core/dir-lock";

// Variables para `wrangler dev` en un archivo `--env-file`, nunca en la línea de órdenes (la ve
// cualquiera con `ps`). Sin dependencias de npm: también corre en la imagen del edge, que no las trae.

/**
 * Archivo dotenv que wrangler lee sin alterar los valores. Wrangler expande `$VAR` (dotenv-expand):
 * `\$` deja un `$` literal. Las comillas no se escapan en dotenv: se usa una que el valor no tenga.
 */
export function dotenvFile(vars: Record<string, string>): string {
  const lines = Object.entries(vars).map(([name, value]) => {
    const escaped = value.replaceAll("$", "\\$");
    const quote = ["'", "`", '"'].find(
      // Entre comillas dobles dotenv convierte `\n` en salto de línea.
      (q) => !escaped.includes(q) && (q !== '"' || !/\\[nr]/.test(escaped)),
    );
    // dotenv cambia los \r por \n, y una barra final escaparía la comilla de cierre.
    if (!quote || value.includes("\r") || escaped.endsWith("\\")) {
      throw invalidConfiguration([
        [name, "cannot be handed to wrangler dev: it mixes ', \" and ` or has \\r or a final \\"],
      ]);
    }
    return `${name}=${quote}${escaped}${quote}`;
  });
  return `${lines.join("\n")}\n`;
}

const ENV_DIR_PREFIX = "farutech-edge-env-";

/**
 * El archivo de variables en una carpeta temporal solo del usuario (0700, archivo 0600). El nombre
 * lleva el pid: un proceso muerto con SIGKILL no limpia, y la siguiente ejecución borra lo suyo.
 */
export function writePrivateEnvFile(
  content: string,
  parent: string = tmpdir(),
): { path: string; remove(): void } {
  removeOrphanedEnvDirs(parent);
  const dir = mkdtempSync(join(parent, `${ENV_DIR_PREFIX}${process.pid}-`));
  const path = join(dir, "edge.env");
  writeFileSync(path, content, { mode: 0o600, flag: "wx" });
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

function removeOrphanedEnvDirs(parent: string): void {
  for (const name of readdirSync(parent)) {
    const pid = new RegExp(`^${ENV_DIR_PREFIX}(\\d+)-`).exec(name)?.[1];
    if (!pid || isAlive(Number(pid))) continue;
    try {
      rmSync(join(parent, name), { recursive: true, force: true });
    } catch {
      // De otro usuario (EACCES): no es nuestra.
    }
  }
}
