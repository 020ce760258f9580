# Turns IN into a C source OUT defining `const char SYM[]` with IN's bytes and a final NUL.
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE ${OUT} "/* generated from ${IN} */\nconst char ${SYM}[] = {${bytes}0x00};\n")
