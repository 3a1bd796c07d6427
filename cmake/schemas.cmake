# Embeds schemas/*.avsc (the current reader schema of each event type) and
# schemas/history/<type>.v<N>.avsc (older writer versions) into one generated C file, so the
# binaries carry the schemas they were built with and parse them once at start-up.
#
# Sets FL_SCHEMAS_GEN_C, the generated source to compile into fl_core. Its table is declared in
# common/fl_schemas.h. CONFIGURE_DEPENDS re-runs the glob when a schema is added or removed;
# DEPENDS regenerates the file when one changes.
set(FL_SCHEMAS_DIR ${CMAKE_CURRENT_LIST_DIR}/../schemas)
get_filename_component(FL_SCHEMAS_DIR ${FL_SCHEMAS_DIR} ABSOLUTE)
file(GLOB FL_SCHEMA_FILES CONFIGURE_DEPENDS ${FL_SCHEMAS_DIR}/*.avsc)
file(GLOB FL_SCHEMA_HISTORY_FILES CONFIGURE_DEPENDS ${FL_SCHEMAS_DIR}/history/*.avsc)

# The file list itself is an input: removing a schema changes no remaining file's timestamp.
# file(CONFIGURE) rewrites the list only when it changes.
set(FL_SCHEMAS_LIST ${CMAKE_BINARY_DIR}/generated/fl_schemas.list)
string(REPLACE ";" "\n" fl_schemas_list_text "${FL_SCHEMA_FILES};${FL_SCHEMA_HISTORY_FILES}")
file(CONFIGURE OUTPUT ${FL_SCHEMAS_LIST} CONTENT "${fl_schemas_list_text}\n" @ONLY)

set(FL_SCHEMAS_GEN_C ${CMAKE_BINARY_DIR}/generated/fl_schemas_gen.c)
add_custom_command(
  OUTPUT ${FL_SCHEMAS_GEN_C}
  COMMAND ${CMAKE_COMMAND} -DSCHEMAS_DIR=${FL_SCHEMAS_DIR} -DOUT=${FL_SCHEMAS_GEN_C}
          -P ${CMAKE_CURRENT_LIST_DIR}/embed_schemas.cmake
  DEPENDS ${FL_SCHEMA_FILES} ${FL_SCHEMA_HISTORY_FILES} ${FL_SCHEMAS_LIST}
          ${CMAKE_CURRENT_LIST_DIR}/embed_schemas.cmake
  COMMENT "Embedding Avro schemas"
  VERBATIM)
