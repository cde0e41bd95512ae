# JPEG image folders, resizing, the ImageNet augmentation, the prefetching
# loader and --data detection (include()d from tests/CMakeLists.txt).
# `test_imagefolder --bench` measures decode + augment throughput instead.
add_executable(test_imagefolder test_imagefolder.c fake_model.c)
target_link_libraries(test_imagefolder PRIVATE rnrt PkgConfig::CHECK PkgConfig::JPEG)
add_test(NAME imagefolder COMMAND test_imagefolder)
set_tests_properties(imagefolder PROPERTIES
  ENVIRONMENT "RNC_JPEG_SAMPLE_DIR=${RNC_DATA_DIR}/cifar10-jpg-sample;RNC_CIFAR_DIR=${RNC_DATA_DIR}/cifar10;OMP_WAIT_POLICY=passive"
  WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
