"""The virtual scanner: head phantoms, calibration targets, THz (FMCW) and visible rendering.

Public names: sim.scene.Subject / Target, sim.scanner.VirtualScanner / RasterDrive,
sim.population.Population. Imports are lazy so `import sim.config` stays light.
"""
