import { type ChildProcess, type SpawnOptions, spawn, spawnSync } from "node:child_process";

let tieable: boolean | undefined;

/** ¿Puede el kernel avisar al hijo de la muerte de este proceso? (Linux, con `setpriv`). */
function canTieToParent(): boolean {
  tieable ??= process.platform === "linux" && spawnSync("setpriv", ["--version"]).status === 0;
  return tieable;
}

/**
 * Lanza un proceso hijo que no sobrevive a este: en Linux, `setpriv --pdeathsig` le hace mandar
 * `signal` si este proceso muere sin limpiar (p. ej. SIGKILL). setpriv se reemplaza por el hijo
 * (exec): su pid y sus señales son las del hijo.
 */
export function spawnTiedToParent(
  command: string,
  args: readonly string[],
  options: SpawnOptions,
  signal: NodeJS.Signals,
): ChildProcess {
  return canTieToParent()
    ? spawn("setpriv", ["--pdeathsig", signal, command, ...args], options)
    : spawn(command, args, options);
}
