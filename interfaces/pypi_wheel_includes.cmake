# ROS 2 wheels from PyPI export include directories of the machine they were built on
# (/opt/python/...). Point those at this interpreter's headers; a normal ROS install is untouched.
get_property(_imported_targets DIRECTORY PROPERTY IMPORTED_TARGETS)
foreach(_t ${_imported_targets})
  get_target_property(_inc ${_t} INTERFACE_INCLUDE_DIRECTORIES)
  if(_inc AND _inc MATCHES "/opt/python/")
    if(NOT Python3_FOUND)
      find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
    endif()
    set_target_properties(${_t} PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${Python3_INCLUDE_DIRS};${Python3_NumPy_INCLUDE_DIRS}")
  endif()
endforeach()
