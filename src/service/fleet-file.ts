import { readFile, stat } from 'node:fs/promises';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { FLEET_LIMITS, IntermissionError, parseFleet, type Fleet } from '../domain/index.js';

/**
 * Reads a fleet file (YAML or JSON; JSON is YAML) and validates it. Errors name the file. A file
 * larger than {@link FLEET_LIMITS.maxFileBytes} is refused before it is read.
 */
export async function loadFleetFile(path: string): Promise<Fleet> {
  let text: string;
  try {
    const { size } = await stat(path);
    if (size > FLEET_LIMITS.maxFileBytes) {
      throw new IntermissionError(
        'INVALID_INPUT',
        `fleet file ${path} is ${size} bytes, more than the ${FLEET_LIMITS.maxFileBytes} (256 MiB) a fleet file may be`,
        { details: { path, bytes: size, maxBytes: FLEET_LIMITS.maxFileBytes } },
      );
    }
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (error instanceof IntermissionError) throw error;
    throw new IntermissionError('INVALID_INPUT', `cannot read fleet file ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  let data: unknown;
  try {
    data = parseYaml(text, { prettyErrors: true });
  } catch (error) {
    const detail = error instanceof YAMLParseError ? error.message : String(error);
    throw new IntermissionError('INVALID_INPUT', `fleet file ${path} is not valid YAML or JSON: ${detail}`, {
      cause: error,
    });
  }
  try {
    return parseFleet(data);
  } catch (error) {
    if (error instanceof IntermissionError) {
      throw new IntermissionError(error.code, `${path}: ${error.message}`, { cause: error, details: error.details });
    }
    throw error;
  }
}
