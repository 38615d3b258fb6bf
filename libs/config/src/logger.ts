export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(message: string): void;
  log(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** One line per message: time, level, component, text. Messages must never carry secrets. */
export function createLogger(component: string, level: LogLevel = 'info', sink: (line: string) => void = (l) => process.stderr.write(l + '\n')): Logger {
  const at = (lvl: LogLevel) => (message: string) => {
    if (ORDER[lvl] >= ORDER[level]) sink(`${new Date().toISOString()} ${lvl.padEnd(5)} ${component}: ${message}`);
  };
  return { debug: at('debug'), log: at('info'), warn: at('warn'), error: at('error') };
}
