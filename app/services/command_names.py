"""ChimeraX's top-level command names, as data for the command policy.

ChimeraX completes an abbreviated command word to the *first registered*
command starting with it, so an abbreviation is only as safe as every command
it could complete to. This list is the set we judge abbreviations against:
the official application's commands (its user guide's command index, 1.x)
plus those the library runtime registers. A word that is no prefix of any
name here is unknown and denied: the policy never guesses in the user's favour.
"""

KNOWN_COMMANDS = frozenset("""
2dlabels addcharge addh alias align alphafold altlocs angle aniso aux axis bfactor blastprotein
boltz bond build bumps buttonpanel cache camera cartoon cd changechains chirality clashes clip
close cofr color colordef colour colourdef combine conference contacts coordset coulombic crossfade
crosslinks crystalcontacts debug defattr define delete devel device dicom display distance
dockprep dssp echo esmfold exit fitmap fly foldseek functionkey getcrd graphics hbonds help
hkcage hide info interfaces key kvfinder label lighting listinfo log marker matchmaker material
mcopy mcp md measure meeting minimize mlp modelcif modeller molmap morph mousemode move movie
msa3d mseries mutationscores name nucleotides open openfold palette pbond perframe pip position
preset pwd quit rainbow redo registration remotecontrol rename resfit ribbon rmsd rna rock roll
runscript save scalebar segger segmentation select sequence set setattr shape shell show size
smoothlines snapshot sop split stop struts style surface swapaa swapna sym tile time toolshed
tool torsion transparency tug turn ui undo usage version view volume vop vr vseries wait webcam
windowsize wobble zone zoom
""".split())

# Commands written as "~name" undo "name"; ChimeraX registers them as their own words.
TILDE_COMMANDS = frozenset("""
~2dlabels ~alias ~cartoon ~clip ~cofr ~colordef ~colourdef ~display ~label ~perframe ~ribbon
~select ~set ~show ~surface ~tile ~struts ~distance ~hbonds ~contacts ~clashes ~nucleotides
""".split())
