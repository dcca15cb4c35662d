/** Kept equal to package.json's version by a unit test (a bundled executable has no package.json). */
export const VERSION = '0.2.0';
